//! Prometheus metrics served over HTTP while attached, and a daemon's
//! flight-recorder reports ([`Reports`]: `/report.json`, `/report.html`,
//! `/report.txt`), and `/healthz`.
//!
//! Each scrape turns the latest snapshot the pipeline published into
//! metric families ([`families`]) and writes them in the format the
//! scraper asked for ([`exposition::negotiate`]): OpenMetrics when its
//! `Accept` header asks for `application/openmetrics-text`, else
//! Prometheus's text format 0.0.4. Label sets are bounded: at most [`MAX_LOCKS`]
//! locks, [`MAX_CAS_SITES`] CAS sites and [`MAX_MAPS`] maps, the busiest,
//! and per map the [`HOT_KEYS`] hottest keys; the rest of a map's
//! operations are `key="other"`. Keys can be user data: they are exported
//! as hashes unless `--metrics-expose-keys`.

use std::{
    net::SocketAddr,
    sync::Arc,
    time::{SystemTime, UNIX_EPOCH},
};

pub mod client;
pub mod exposition;

use thiserror::Error;
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
    sync::watch,
    task::JoinHandle,
};

use crate::{
    duration,
    model::{
        hash::stable_hash, AttachFailure, GcReport, Key, LockKind, LockReport, MapImplementation,
        MapKind, MapOp, Snapshot,
    },
    view::ReportFormat,
};

use exposition::{Family, Kind, Sample, Value};

/// Most locks exported (by contentions).
pub const MAX_LOCKS: usize = 100;
/// Most CAS sites exported (by failures).
pub const MAX_CAS_SITES: usize = 100;
/// Most maps exported (by operations).
pub const MAX_MAPS: usize = 50;
/// Hot keys exported per map (the rest fold into `key="other"`).
pub const HOT_KEYS: usize = 10;

/// Log2 wait buckets: bucket `b` ends at 2^(b+1) ns. Exported from ~1 µs
/// (b = 9) to ~17 s (b = 33), then +Inf.
const FIRST_BUCKET: usize = 9;
const LAST_BUCKET: usize = 33;

/// One lock's figures.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LockFigures {
    /// Global name, else the address.
    pub lock: String,
    /// Its kind.
    pub kind: LockKind,
    /// Slow-path entries.
    pub contentions: u64,
    /// Measured waits.
    pub acquisitions: u64,
    /// Their sum, seconds.
    pub wait_seconds: f64,
    /// Prometheus buckets: (upper bound in seconds, count in the bucket).
    #[serde(skip)]
    pub buckets: Vec<(f64, u64)>,
}

impl LockFigures {
    /// The figures of a lock (or a wait for a signal).
    fn of(lock: &LockReport) -> Self {
        LockFigures {
            lock: lock
                .name
                .clone()
                .unwrap_or_else(|| format!("{:#x}", lock.address)),
            kind: lock.kind,
            contentions: lock.contentions,
            acquisitions: lock.acquisitions,
            wait_seconds: lock.wait_seconds_total,
            buckets: histogram_buckets(
                &lock
                    .wait_histogram
                    .iter()
                    .map(|b| (b.ns_min, b.count))
                    .collect::<Vec<_>>(),
            ),
        }
    }
}

/// One CAS site's figures.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CasFigures {
    /// `function+0xOFFSET`.
    pub site: String,
    /// Attempts.
    pub attempts: u64,
    /// Failures.
    pub failures: u64,
}

/// One map's figures.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MapFigures {
    /// Global name, else the address.
    pub map: String,
    /// Its kind.
    pub kind: MapKind,
    /// Operations by name (non-zero), internal events included.
    pub ops: Vec<(&'static str, u64)>,
    /// The hottest keys (exported form) and their operations, then
    /// `("other", the rest)` when the map had keys.
    pub hot_keys: Vec<(String, u64)>,
    /// Its structure as last read (runtime maps selected with `--map`,
    /// `sync.Map`s up to Go 1.23).
    pub health: Option<HealthFigures>,
}

/// A map's structure in the metrics.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HealthFigures {
    /// Live entries.
    pub entries: u64,
    /// Entries per slot (runtime maps).
    pub load_factor: Option<f64>,
    /// Deleted slots per slot (runtime maps).
    pub tombstone_ratio: Option<f64>,
    /// Promotions of the dirty map while watched (`sync.Map`s).
    pub promotions: Option<u64>,
}

/// The bounded figures a scrape shows, and what `--jsonl` writes once per
/// second (one JSON object per line).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Figures {
    /// Seconds since attach.
    pub elapsed_seconds: f64,
    /// Target PID.
    pub pid: u32,
    /// Target executable.
    pub exe: String,
    /// Target command name.
    pub comm: String,
    /// Target Go version, or empty.
    pub go_version: String,
    /// Locks, most contended first.
    pub locks: Vec<LockFigures>,
    /// Native waits for another thread (condition variables, joins).
    pub signal_waits: Vec<LockFigures>,
    /// CAS sites, most failures first.
    pub cas: Vec<CasFigures>,
    /// Maps, busiest first.
    pub maps: Vec<MapFigures>,
    /// Events lost.
    pub events_lost: u64,
    /// Probe hits by probe kind (`lock`, `cas`, `map`).
    pub probe_hits: Vec<(&'static str, u64)>,
    /// The probes' estimated cost in the last second, as a ratio of the
    /// target's own CPU time (null without a budget or before a second).
    pub overhead_ratio: Option<f64>,
    /// The overhead budget as a ratio, if any.
    pub overhead_budget_ratio: Option<f64>,
    /// What fraction each probe group saw (`counting`, `waits`, `keys`):
    /// 1 when exact; sampled figures are scaled by it.
    pub sampled_fraction: Vec<(&'static str, f64)>,
    /// Go's GC cycles and pauses, when probed (exact).
    pub gc: Option<GcReport>,
    /// The target's waits for a CPU, when timed.
    pub run_queue: Option<RunQueueMetric>,
}

/// The target's waits for a CPU (run-queue latency).
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunQueueMetric {
    /// Waits ended.
    pub waits: u64,
    /// Their sum, seconds.
    pub wait_seconds: f64,
    /// Prometheus buckets: (upper bound in seconds, count in the bucket).
    #[serde(skip)]
    pub buckets: Vec<(f64, u64)>,
}

impl Figures {
    /// The bounded figures of a snapshot; keys hashed unless `expose_keys`.
    pub fn of(snapshot: &Snapshot, expose_keys: bool) -> Self {
        let c = &snapshot.probe_counters;
        Self {
            elapsed_seconds: snapshot.duration_seconds,
            pid: snapshot.target.pid,
            exe: snapshot.target.exe.clone(),
            comm: snapshot.target.comm.clone(),
            go_version: snapshot.target.go_version.clone().unwrap_or_default(),
            locks: snapshot
                .locks
                .iter()
                .take(MAX_LOCKS)
                .map(LockFigures::of)
                .collect(),
            signal_waits: snapshot
                .signal_waits
                .iter()
                .take(MAX_LOCKS)
                .map(LockFigures::of)
                .collect(),
            cas: snapshot
                .cas
                .iter()
                .take(MAX_CAS_SITES)
                .map(|cas| CasFigures {
                    site: cas.site.to_string(),
                    attempts: cas.attempts,
                    failures: cas.failures,
                })
                .collect(),
            maps: snapshot
                .maps
                .iter()
                .take(MAX_MAPS)
                .map(|map| {
                    let mut ops: Vec<(&'static str, u64)> = map
                        .ops
                        .0
                        .iter()
                        .chain(&map.internal.0)
                        .map(|&(op, n)| (op.name(), n))
                        .collect();
                    ops.sort_by_key(|&(name, _)| {
                        MapOp::ALL.iter().position(|op| op.name() == name)
                    });
                    let mut hot_keys: Vec<(String, u64)> = Vec::new();
                    if map.keyed {
                        for key in map.top_keys.iter().take(HOT_KEYS) {
                            hot_keys.push((exported_key(&key.key, expose_keys), key.total));
                        }
                        let listed: u64 = hot_keys.iter().map(|(_, n)| n).sum();
                        hot_keys.push(("other".into(), map.total.saturating_sub(listed)));
                    }
                    MapFigures {
                        map: map.label(),
                        kind: map.kind,
                        ops,
                        hot_keys,
                        health: map.health.as_ref().map(|h| {
                            let runtime = h.implementation != MapImplementation::SyncMap;
                            HealthFigures {
                                entries: h.entries,
                                load_factor: runtime.then_some(h.load_factor),
                                tombstone_ratio: runtime.then_some(h.tombstone_ratio),
                                promotions: h.promotions,
                            }
                        }),
                    }
                })
                .collect(),
            events_lost: snapshot.events_lost,
            probe_hits: vec![("lock", c.hits), ("cas", c.cas_hits), ("map", c.map_hits)],
            overhead_ratio: snapshot
                .overhead
                .as_ref()
                .and_then(|o| o.per_second_percent.last())
                .map(|percent| percent / 100.0),
            overhead_budget_ratio: snapshot
                .overhead
                .as_ref()
                .and_then(|o| o.budget_percent)
                .map(|percent| percent / 100.0),
            sampled_fraction: match &snapshot.overhead {
                Some(o) => vec![
                    ("counting", o.sampling.counting),
                    ("waits", o.sampling.waits),
                    ("keys", 1.0 / f64::from(o.setting.keys_one_in.max(1))),
                ],
                None => vec![("counting", 1.0), ("waits", 1.0), ("keys", 1.0)],
            },
            gc: snapshot.gc.clone(),
            run_queue: snapshot.run_queue.as_ref().map(|queue| RunQueueMetric {
                waits: queue.figures.waits,
                wait_seconds: queue.figures.wait_seconds_total,
                buckets: histogram_buckets(
                    &queue
                        .histogram
                        .iter()
                        .map(|b| (b.ns_min, b.count))
                        .collect::<Vec<_>>(),
                ),
            }),
        }
    }
}

/// How a key appears in a label: as it is with `expose`, else `h:` and 16
/// hex digits of a fixed 64-bit hash of its text (the same key, the same
/// hash, in every run).
pub fn exported_key(key: &Key, expose: bool) -> String {
    let text = key.to_string();
    if expose {
        text
    } else {
        format!("h:{:016x}", stable_hash(text.as_str()))
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

/// One target's figures as a scrape sees them: the pipeline's latest
/// snapshot while it runs, its final one after it ended.
#[derive(Debug, Clone)]
pub enum Feed {
    /// A running pipeline's snapshots.
    Live(watch::Receiver<Arc<Snapshot>>),
    /// The final snapshot of a target that exited (kept for a grace period,
    /// so that the last scrapes see its final counts).
    Ended(Arc<Snapshot>),
}

impl Feed {
    /// The latest snapshot.
    pub fn latest(&self) -> Arc<Snapshot> {
        match self {
            Self::Live(snapshots) => snapshots.borrow().clone(),
            Self::Ended(snapshot) => snapshot.clone(),
        }
    }
}

/// What one scrape shows: every target's figures and, from a daemon, its
/// own.
#[derive(Debug, Clone, Default)]
pub struct Scrape {
    /// The targets, each with its own `pid` and `comm` labels.
    pub targets: Vec<Feed>,
    /// The daemon's own figures (`None` for `attach`).
    pub daemon: Option<DaemonFigures>,
}

/// A daemon's own figures.
#[derive(Debug, Clone, Default)]
pub struct DaemonFigures {
    /// Targets being watched now.
    pub targets: usize,
    /// Processes selected but not watched, by why.
    pub attach_errors: Vec<(AttachFailure, u64)>,
    /// The flight recorder's use, when it records.
    pub recorder: Option<RecorderFigures>,
}

/// What a daemon's flight recorder holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecorderFigures {
    /// Targets recorded (watched, and exited within the span).
    pub recordings: usize,
    /// The memory their seconds hold, bytes (about).
    pub bytes: usize,
    /// Seconds dropped before their time to stay within the memory bound.
    pub dropped_seconds: u64,
}

/// A running `/metrics` endpoint.
pub struct MetricsServer {
    task: JoinHandle<()>,
    /// Where it listens.
    pub local_addr: SocketAddr,
}

impl MetricsServer {
    /// Binds `addr` and serves `/metrics` from one target's latest
    /// snapshot until dropped (`attach`); keys are hashed unless
    /// `expose_keys`.
    pub async fn bind(
        addr: SocketAddr,
        snapshots: watch::Receiver<Arc<Snapshot>>,
        expose_keys: bool,
    ) -> Result<Self, MetricsError> {
        // The sender can go: a receiver keeps the last value it was sent.
        let (_tx, scrapes) = watch::channel(Arc::new(Scrape {
            targets: vec![Feed::Live(snapshots)],
            daemon: None,
        }));
        Self::bind_scrapes(addr, scrapes, expose_keys, None).await
    }

    /// Binds `addr` and serves `/metrics` from the latest of `scrapes`
    /// (a daemon's targets), and the reports of `reports` (its flight
    /// recorder), until dropped.
    pub async fn bind_scrapes(
        addr: SocketAddr,
        scrapes: watch::Receiver<Arc<Scrape>>,
        expose_keys: bool,
        reports: Option<Arc<dyn Reports>>,
    ) -> Result<Self, MetricsError> {
        let error = |source| MetricsError { addr, source };
        let listener = TcpListener::bind(addr).await.map_err(error)?;
        let local_addr = listener.local_addr().map_err(error)?;
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let scrapes = scrapes.clone();
                let reports = reports.clone();
                tokio::spawn(async move {
                    if let Err(e) = serve(stream, &scrapes, expose_keys, reports.as_deref()).await {
                        log::debug!("metrics connection: {e}");
                    }
                });
            }
        });
        Ok(Self { task, local_addr })
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The value of header `name` in an HTTP request's head, if present.
fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.split("\r\n").skip(1).find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

/// Answers one HTTP/1.x request: `GET /metrics` in the negotiated format,
/// the flight recorder's reports, `/healthz`; else 404.
async fn serve(
    mut stream: TcpStream,
    scrapes: &watch::Receiver<Arc<Scrape>>,
    expose_keys: bool,
    reports: Option<&dyn Reports>,
) -> std::io::Result<()> {
    let mut request = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 16 * 1024 {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        request.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&request);
    let target = head.split_whitespace().nth(1).unwrap_or("");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let answer = if !head.starts_with("GET ") {
        Answer::text("405 Method Not Allowed", "mapwatch answers GET only\n")
    } else {
        match path {
            "/metrics" => {
                let format = exposition::negotiate(header(&head, "accept"));
                let scrape = scrapes.borrow().clone();
                let families = scrape_families(&scrape, expose_keys);
                Answer {
                    status: "200 OK",
                    content_type: format.content_type(),
                    body: format.render(&families).into_bytes(),
                }
            }
            "/healthz" => {
                let scrape = scrapes.borrow().clone();
                let watched = match &scrape.daemon {
                    Some(daemon) => daemon.targets,
                    None => scrape.targets.len(),
                };
                Answer::text("200 OK", &format!("ok: {watched} target(s) watched\n"))
            }
            "/report.json" => report(reports, query, ReportFormat::Json, "application/json"),
            "/report.html" => report(reports, query, ReportFormat::Html, "text/html; charset=utf-8"),
            "/report.txt" => report(reports, query, ReportFormat::Text, "text/plain; charset=utf-8"),
            _ => Answer::text(
                "404 Not Found",
                "mapwatch serves /metrics, /healthz and (a daemon) /report.json, /report.html, /report.txt\n",
            ),
        }
    };
    let head = format!(
        "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        answer.status,
        answer.content_type,
        answer.body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(&answer.body).await?;
    stream.shutdown().await
}

/// An HTTP answer.
struct Answer {
    status: &'static str,
    content_type: &'static str,
    body: Vec<u8>,
}

impl Answer {
    fn text(status: &'static str, text: &str) -> Self {
        Self {
            status,
            content_type: "text/plain; charset=utf-8",
            body: text.as_bytes().to_vec(),
        }
    }
}

/// A flight-recorder report in `format`, for the query string `query`.
fn report(
    reports: Option<&dyn Reports>,
    query: &str,
    format: ReportFormat,
    content_type: &'static str,
) -> Answer {
    let Some(reports) = reports else {
        return Answer::text(
            "404 Not Found",
            "no flight recorder here: `mapwatch daemon` records (see --record)\n",
        );
    };
    let query = match ReportQuery::parse(query, SystemTime::now()) {
        Ok(query) => query,
        Err(e) => return Answer::text("400 Bad Request", &format!("{e}\n")),
    };
    match reports.report(&query) {
        Ok(snapshot) => {
            let mut body = Vec::new();
            match format.write(&snapshot, &mut body) {
                Ok(()) => Answer {
                    status: "200 OK",
                    content_type,
                    body,
                },
                Err(e) => Answer::text(
                    "500 Internal Server Error",
                    &format!("writing the report: {e}\n"),
                ),
            }
        }
        Err(miss @ ReportMiss::Several(_)) => Answer::text("409 Conflict", &format!("{miss}\n")),
        Err(miss) => Answer::text("404 Not Found", &format!("{miss}\n")),
    }
}

/// Where a server finds flight-recorder reports: a daemon's recordings.
pub trait Reports: Send + Sync {
    /// The report of the window `query` asks for.
    fn report(&self, query: &ReportQuery) -> Result<Snapshot, ReportMiss>;
}

/// What a report request asks for: `pid=N&since=DURATION&until=DURATION`.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportQuery {
    /// The target; when absent, the only one recorded within the window.
    pub pid: Option<u32>,
    /// The window's start (`since` ago; the recording's start without it).
    pub from: SystemTime,
    /// The window's end (`until` ago; now without it).
    pub to: SystemTime,
}

/// A report query that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum QueryError {
    /// A parameter other than pid, since, until.
    #[error("unknown parameter `{0}` (use pid=, since=, until=)")]
    Unknown(String),
    /// A pid that is not a number.
    #[error("pid=`{0}` is not a process ID")]
    Pid(String),
    /// A since or until that is not a duration.
    #[error("{name}=: {source}")]
    Duration {
        /// The parameter.
        name: &'static str,
        /// Why.
        source: duration::DurationError,
    },
    /// until= at or before since=.
    #[error("until= must be less long ago than since=")]
    Empty,
}

impl ReportQuery {
    /// Parses a query string at `now`.
    pub fn parse(query: &str, now: SystemTime) -> Result<Self, QueryError> {
        let mut parsed = Self {
            pid: None,
            from: UNIX_EPOCH,
            to: now,
        };
        let ago = |name: &'static str, value: &str| {
            duration::parse(value)
                .map(|d| now.checked_sub(d).unwrap_or(UNIX_EPOCH))
                .map_err(|source| QueryError::Duration { name, source })
        };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            match name {
                "pid" => {
                    parsed.pid = Some(
                        value
                            .parse()
                            .map_err(|_| QueryError::Pid(value.to_string()))?,
                    )
                }
                "since" => parsed.from = ago("since", value)?,
                "until" => parsed.to = ago("until", value)?,
                other => return Err(QueryError::Unknown(other.to_string())),
            }
        }
        if parsed.to <= parsed.from {
            return Err(QueryError::Empty);
        }
        Ok(parsed)
    }
}

/// Why a report could not be given.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ReportMiss {
    /// The PID is not recorded.
    #[error("PID {0} is not recorded (never watched, or its recording has expired)")]
    Unknown(u32),
    /// Nothing of it within the window.
    #[error("nothing of PID {0} was recorded within that window")]
    NotInWindow(u32),
    /// No target within the window.
    #[error("no target was recorded within that window")]
    NoneInWindow,
    /// Several targets within the window, and no pid= to choose.
    #[error("several targets were recorded within that window ({0}): choose one with pid=")]
    Several(String),
}

/// The families of a scrape: every target's, merged by name (a family's
/// samples one target after another), then the daemon's own.
pub fn scrape_families(scrape: &Scrape, expose_keys: bool) -> Vec<Family> {
    let mut out: Vec<Family> = Vec::new();
    for feed in &scrape.targets {
        for family in families(&Figures::of(&feed.latest(), expose_keys)) {
            match out.iter_mut().find(|f| f.name == family.name) {
                Some(merged) => merged.samples.extend(family.samples),
                None => out.push(family),
            }
        }
    }
    if let Some(daemon) = &scrape.daemon {
        out.push(Family {
            name: "mapwatch_targets".into(),
            help: "Processes the daemon watches now.",
            unit: None,
            kind: Kind::Gauge,
            samples: vec![Sample {
                labels: vec![],
                value: Value::Real(daemon.targets as f64),
            }],
        });
        out.push(Family {
            name: "mapwatch_attach_errors".into(),
            help: "Selected processes the daemon could not watch, by reason.",
            unit: None,
            kind: Kind::Counter,
            samples: daemon
                .attach_errors
                .iter()
                .map(|(reason, n)| Sample {
                    labels: vec![("reason", reason.to_string())],
                    value: Value::Count(*n),
                })
                .collect(),
        });
        if let Some(recorder) = daemon.recorder {
            let gauge = |name: &str, help, value: f64| Family {
                name: name.into(),
                help,
                unit: None,
                kind: Kind::Gauge,
                samples: vec![Sample {
                    labels: vec![],
                    value: Value::Real(value),
                }],
            };
            out.push(gauge(
                "mapwatch_recordings",
                "Targets the flight recorder holds (watched, or exited within its span).",
                recorder.recordings as f64,
            ));
            out.push(gauge(
                "mapwatch_recorder_bytes",
                "Memory the flight recorder's seconds hold, bytes (about).",
                recorder.bytes as f64,
            ));
            out.push(Family {
                name: "mapwatch_recorder_dropped_seconds".into(),
                help: "Recorded seconds dropped before their time to stay within the memory bound.",
                unit: None,
                kind: Kind::Counter,
                samples: vec![Sample {
                    labels: vec![],
                    value: Value::Count(recorder.dropped_seconds),
                }],
            });
        }
    }
    out
}

/// The metric families of one target, every name prefixed `mapwatch_`,
/// every series labelled with the target's `pid` and `comm`.
pub fn families(s: &Figures) -> Vec<Family> {
    let family = |name: &str, help, unit, kind, samples| Family {
        name: format!("mapwatch_{name}"),
        help,
        unit,
        kind,
        samples,
    };
    let sample = |labels, value| Sample { labels, value };
    let lock_labels =
        |lock: &LockFigures| vec![("lock", lock.lock.clone()), ("kind", lock.kind.to_string())];
    let mut out = vec![
        family(
            "target",
            "The traced process.",
            None,
            Kind::Info,
            vec![sample(
                vec![("exe", s.exe.clone()), ("go_version", s.go_version.clone())],
                Value::Real(1.0),
            )],
        ),
        family(
            "lock_contentions",
            "Entries into a lock's contended slow path (or futex waits).",
            None,
            Kind::Counter,
            s.locks
                .iter()
                .map(|lock| sample(lock_labels(lock), Value::Count(lock.contentions)))
                .collect(),
        ),
        family(
            "lock_wait_seconds",
            "Time from a lock's slow-path entry to its acquisition.",
            Some("seconds"),
            Kind::Histogram,
            s.locks
                .iter()
                .map(|lock| {
                    sample(
                        lock_labels(lock),
                        Value::Histogram {
                            buckets: lock.buckets.clone(),
                            sum: lock.wait_seconds,
                            count: lock.acquisitions,
                        },
                    )
                })
                .collect(),
        ),
    ];
    if !s.signal_waits.is_empty() {
        out.push(family(
            "signal_wait_seconds",
            "Native waits for another thread (a condition variable's signal, a thread's exit): not lock contention.",
            Some("seconds"),
            Kind::Histogram,
            s.signal_waits
                .iter()
                .map(|wait| {
                    sample(
                        vec![
                            ("object", wait.lock.clone()),
                            ("kind", wait.kind.to_string()),
                        ],
                        Value::Histogram {
                            buckets: wait.buckets.clone(),
                            sum: wait.wait_seconds,
                            count: wait.acquisitions,
                        },
                    )
                })
                .collect(),
        ));
    }
    for (name, help, value) in [
        (
            "cas_attempts",
            "Compare-and-swaps executed at a site.",
            (|c: &CasFigures| c.attempts) as fn(&CasFigures) -> u64,
        ),
        (
            "cas_failures",
            "Compare-and-swaps that failed at a site.",
            |c: &CasFigures| c.failures,
        ),
    ] {
        out.push(family(
            name,
            help,
            None,
            Kind::Counter,
            s.cas
                .iter()
                .map(|cas| sample(vec![("site", cas.site.clone())], Value::Count(value(cas))))
                .collect(),
        ));
    }
    out.push(family(
        "map_ops",
        "Map operations by kind (load, store, delete, … and sync.Map's internal miss, dirty_copy, expand).",
        None,
        Kind::Counter,
        s.maps
            .iter()
            .flat_map(|map| {
                map.ops.iter().map(|&(op, count)| {
                    sample(
                        vec![
                            ("map", map.map.clone()),
                            ("kind", map.kind.to_string()),
                            ("op", op.to_string()),
                        ],
                        Value::Count(count),
                    )
                })
            })
            .collect(),
    ));
    out.push(family(
        "hot_key_ops",
        "Operations on a map's hottest keys; key=\"other\" holds the rest.",
        None,
        Kind::Counter,
        s.maps
            .iter()
            .flat_map(|map| {
                map.hot_keys.iter().map(|(key, count)| {
                    sample(
                        vec![("map", map.map.clone()), ("key", key.clone())],
                        Value::Count(*count),
                    )
                })
            })
            .collect(),
    ));
    out.push(family(
        "map_grows",
        "Times a runtime map grew (the runtime's grow functions), exact; also map_ops_total{op=\"grow\"}.",
        None,
        Kind::Counter,
        s.maps
            .iter()
            .filter_map(|map| {
                let &(_, n) = map.ops.iter().find(|(op, _)| *op == MapOp::Grow.name())?;
                Some(sample(vec![("map", map.map.clone())], Value::Count(n)))
            })
            .collect(),
    ));
    type Health = fn(&HealthFigures) -> Option<Value>;
    let health: [(&str, &str, Kind, Health); 4] = [
        (
            "map_entries",
            "Live entries of a runtime map or sync.Map, read from the target's memory once a second.",
            Kind::Gauge,
            |h| Some(Value::Count(h.entries)),
        ),
        (
            "map_load_factor",
            "A runtime map's entries per slot of capacity (Go maps never shrink).",
            Kind::Gauge,
            |h| h.load_factor.map(Value::Real),
        ),
        (
            "map_tombstone_ratio",
            "A runtime map's deleted slots per slot of capacity.",
            Kind::Gauge,
            |h| h.tombstone_ratio.map(Value::Real),
        ),
        (
            "map_promotions",
            "Promotions of a sync.Map's dirty map to its read-only map while watched (Go <= 1.23; each is followed by a copy of the whole map).",
            Kind::Counter,
            |h| h.promotions.map(Value::Count),
        ),
    ];
    for (name, help, kind, value) in health {
        out.push(family(
            name,
            help,
            None,
            kind,
            s.maps
                .iter()
                .filter_map(|map| {
                    let h = map.health.as_ref()?;
                    Some(sample(vec![("map", map.map.clone())], value(h)?))
                })
                .collect(),
        ));
    }
    out.push(family(
        "events_lost",
        "Events the kernel dropped because a ring buffer was full.",
        None,
        Kind::Counter,
        vec![sample(vec![], Value::Count(s.events_lost))],
    ));
    if let Some(gc) = &s.gc {
        out.push(family(
            "go_gc_cycles",
            "Go GC cycles that ended (Go's NumGC), exact.",
            None,
            Kind::Counter,
            vec![sample(vec![], Value::Count(gc.cycles))],
        ));
        // By reason where the runtime says it: gc (sweep and mark
        // termination), other; else all as unknown.
        let by_reason: Vec<(&str, u64, f64)> = match (gc.gc_pauses, gc.gc_pause_seconds_total) {
            (Some(n), Some(seconds)) => vec![
                ("gc", n, seconds),
                (
                    "other",
                    gc.pauses.saturating_sub(n),
                    (gc.pause_seconds_total - seconds).max(0.0),
                ),
            ],
            _ => vec![("unknown", gc.pauses, gc.pause_seconds_total)],
        };
        out.push(family(
            "go_pauses",
            "Go stop-the-world pauses, by reason, exact.",
            None,
            Kind::Counter,
            by_reason
                .iter()
                .map(|&(reason, n, _)| {
                    sample(vec![("reason", reason.to_string())], Value::Count(n))
                })
                .collect(),
        ));
        out.push(family(
            "go_pause_seconds",
            "Go stop-the-world time, by reason: from the stop's start to the restart's.",
            None,
            Kind::Counter,
            by_reason
                .iter()
                .map(|&(reason, _, seconds)| {
                    sample(vec![("reason", reason.to_string())], Value::Real(seconds))
                })
                .collect(),
        ));
    }
    if let Some(queue) = &s.run_queue {
        out.push(family(
            "run_queue_wait_seconds",
            "How long the target's threads, once runnable (woken or preempted), waited for a CPU: run-queue latency, exact while watched.",
            Some("seconds"),
            Kind::Histogram,
            vec![sample(
                vec![],
                Value::Histogram {
                    buckets: queue.buckets.clone(),
                    sum: queue.wait_seconds,
                    count: queue.waits,
                },
            )],
        ));
    }
    out.push(family(
        "probe_hits",
        "Probe hits by kind.",
        None,
        Kind::Counter,
        s.probe_hits
            .iter()
            .map(|&(probe, hits)| sample(vec![("probe", probe.to_string())], Value::Count(hits)))
            .collect(),
    ));
    for (name, help, value) in [
        (
            "overhead_ratio",
            "The probes' estimated cost in the last second over the target's own CPU time.",
            s.overhead_ratio,
        ),
        (
            "overhead_budget_ratio",
            "The overhead governor's budget over the target's own CPU time.",
            s.overhead_budget_ratio,
        ),
    ] {
        if let Some(value) = value {
            out.push(family(
                name,
                help,
                None,
                Kind::Gauge,
                vec![sample(vec![], Value::Real(value))],
            ));
        }
    }
    out.push(family(
        "sampled_fraction",
        "Fraction of the work a probe group saw (1: exact); sampled figures are scaled by it.",
        None,
        Kind::Gauge,
        s.sampled_fraction
            .iter()
            .map(|&(probe, fraction)| {
                sample(vec![("probe", probe.to_string())], Value::Real(fraction))
            })
            .collect(),
    ));
    // Every series says whose it is: the daemon serves many targets, and a
    // dashboard filters by them.
    for family in &mut out {
        for sample in &mut family.samples {
            sample
                .labels
                .splice(0..0, [("pid", s.pid.to_string()), ("comm", s.comm.clone())]);
        }
    }
    out
}

/// Prometheus buckets (upper bound in seconds, count in the bucket) from
/// the non-empty log2 buckets of a wait histogram, given as (lower bound in
/// ns, count): everything up to ~1 µs in the first, ~17 s and more in +Inf.
fn histogram_buckets(buckets: &[(u64, u64)]) -> Vec<(f64, u64)> {
    let mut counts = [0u64; 64];
    for &(ns_min, count) in buckets {
        let bucket = if ns_min == 0 {
            0
        } else {
            63 - ns_min.leading_zeros() as usize
        };
        counts[bucket] += count;
    }
    let count = |range: std::ops::Range<usize>| -> u64 { counts[range].iter().sum() };
    let mut out = Vec::with_capacity(LAST_BUCKET - FIRST_BUCKET + 2);
    out.push((
        2f64.powi(FIRST_BUCKET as i32 + 1) / 1e9,
        count(0..FIRST_BUCKET + 1),
    ));
    for b in FIRST_BUCKET + 1..=LAST_BUCKET {
        out.push((2f64.powi(b as i32 + 1) / 1e9, count(b..b + 1)));
    }
    out.push((f64::MAX, count(LAST_BUCKET + 1..64)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_partition_every_wait() {
        let buckets = histogram_buckets(&[
            (0, 1),       // 0-1 ns
            (1 << 9, 2),  // ~0.5-1 µs
            (1 << 10, 3), // ~1-2 µs
            (1 << 33, 4), // ~8.6-17 s
            (1 << 40, 5), // ~18 min
        ]);
        assert_eq!(buckets.iter().map(|b| b.1).sum::<u64>(), 15);
        assert_eq!(buckets[0].1, 3);
        assert_eq!(buckets[1].1, 3);
        assert_eq!(buckets.last().map(|b| b.1), Some(5));
        assert_eq!(buckets.last().map(|b| b.0), Some(f64::MAX));
        assert!(buckets.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn waits_for_a_signal_are_their_own_family() {
        let mut snapshot = crate::view::sample_snapshot();
        let mut cond = snapshot.locks[0].clone();
        cond.name = Some("queue_cv".into());
        cond.kind = LockKind::Condvar;
        snapshot.signal_waits = vec![cond];
        let families = families(&Figures::of(&snapshot, false));
        let text =
            super::exposition::Exposition::render(&super::exposition::OpenMetrics, &families);
        assert!(
            text.contains(r#"mapwatch_signal_wait_seconds_count{pid="7",comm="x",object="queue_cv",kind="condvar"} 12"#),
            "{text}"
        );
        // Not a lock.
        assert!(!text.contains(r#"lock="queue_cv""#), "{text}");
    }

    #[test]
    fn keys_are_hashed_unless_exposed() {
        let key = Key::Str {
            text: "user-7".into(),
            truncated: false,
        };
        assert_eq!(exported_key(&key, true), "user-7");
        let hashed = exported_key(&key, false);
        assert!(hashed.starts_with("h:") && hashed.len() == 18, "{hashed}");
        assert_eq!(hashed, exported_key(&key, false));
    }

    /// `GET path` with these extra header lines; the whole response.
    async fn get(addr: SocketAddr, path: &str, headers: &str) -> String {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\n{headers}\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        response
    }

    #[tokio::test]
    async fn serves_the_format_the_scraper_asks_for() {
        let snapshot = crate::view::sample_snapshot();
        let (_tx, rx) = watch::channel(Arc::new(snapshot));
        let server = MetricsServer::bind("127.0.0.1:0".parse().unwrap(), rx, true)
            .await
            .unwrap();
        let samples = [
            r#"mapwatch_lock_contentions_total{pid="7",comm="x",lock="main.hotMu",kind="mutex"} 12"#,
            r#"mapwatch_lock_wait_seconds_count{pid="7",comm="x",lock="main.hotMu",kind="mutex"} 12"#,
            r#"mapwatch_lock_wait_seconds_bucket{pid="7",comm="x",lock="main.hotMu",kind="mutex",le="+Inf"} 12"#,
            r#"mapwatch_cas_failures_total{pid="7",comm="x",site="main.f+0x10"} 2"#,
            r#"mapwatch_map_ops_total{pid="7",comm="x",map="main.cache",kind="map",op="load"} 100"#,
            r#"mapwatch_hot_key_ops_total{pid="7",comm="x",map="main.cache",key="k1"} 75"#,
            r#"mapwatch_map_entries{pid="7",comm="x",map="main.cache"} 1000"#,
            r#"mapwatch_map_grows_total{pid="7",comm="x",map="main.cache"} 2"#,
            r#"mapwatch_map_load_factor{pid="7",comm="x",map="main.cache"} 0.5"#,
            r#"mapwatch_map_tombstone_ratio{pid="7",comm="x",map="main.cache"} 0.125"#,
            r#"mapwatch_hot_key_ops_total{pid="7",comm="x",map="main.cache",key="other"} 25"#,
            r#"mapwatch_target_info{pid="7",comm="x",exe="/bin/x",go_version="go1.27.3"} 1.0"#,
            r#"mapwatch_events_lost_total{pid="7",comm="x"} 0"#,
            r#"mapwatch_overhead_ratio{pid="7",comm="x"} 0.004"#,
            r#"mapwatch_overhead_budget_ratio{pid="7",comm="x"} 0.02"#,
            r#"mapwatch_sampled_fraction{pid="7",comm="x",probe="counting"} 1.0"#,
            r#"mapwatch_sampled_fraction{pid="7",comm="x",probe="keys"} 1.0"#,
            r#"mapwatch_go_gc_cycles_total{pid="7",comm="x"} 3"#,
            r#"mapwatch_go_pauses_total{pid="7",comm="x",reason="gc"} 6"#,
            r#"mapwatch_go_pauses_total{pid="7",comm="x",reason="other"} 1"#,
            r#"mapwatch_go_pause_seconds_total{pid="7",comm="x",reason="gc"} 0.0012"#,
        ];
        let accept =
            "Accept: application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5\r\n";
        let openmetrics = get(server.local_addr, "/metrics", accept).await;
        assert!(openmetrics.starts_with("HTTP/1.1 200 OK"), "{openmetrics}");
        assert!(openmetrics.contains("Content-Type: application/openmetrics-text"));
        for line in samples.iter().chain(&[
            "# TYPE mapwatch_target info",
            "# UNIT mapwatch_lock_wait_seconds seconds",
            "# TYPE mapwatch_lock_contentions counter",
            "# EOF",
        ]) {
            assert!(openmetrics.contains(line), "missing {line}:\n{openmetrics}");
        }
        // A plain scrape (curl, promtool) gets the classic text format.
        let text = get(server.local_addr, "/metrics", "").await;
        assert!(
            text.contains("Content-Type: text/plain; version=0.0.4"),
            "{text}"
        );
        for line in samples.iter().chain(&[
            "# TYPE mapwatch_target_info gauge",
            "# TYPE mapwatch_lock_contentions_total counter",
        ]) {
            assert!(text.contains(line), "missing {line}:\n{text}");
        }
        assert!(
            !text.contains("# EOF") && !text.contains("# UNIT"),
            "{text}"
        );
        let response = get(server.local_addr, "/", "").await;
        assert!(response.starts_with("HTTP/1.1 404"), "{response}");
    }

    #[test]
    fn a_daemons_scrape_merges_its_targets_by_family() {
        let one = Arc::new(crate::view::sample_snapshot());
        let mut other = crate::view::sample_snapshot();
        other.target.pid = 8;
        let scrape = Scrape {
            targets: vec![Feed::Ended(one), Feed::Ended(Arc::new(other))],
            daemon: Some(DaemonFigures {
                targets: 1,
                attach_errors: vec![(AttachFailure::Plan, 2)],
                recorder: Some(RecorderFigures {
                    recordings: 2,
                    bytes: 4096,
                    dropped_seconds: 0,
                }),
            }),
        };
        let families = scrape_families(&scrape, true);
        let names: Vec<&str> = families.iter().map(|f| f.name.as_str()).collect();
        let mut unique = names.clone();
        unique.dedup();
        assert_eq!(names, unique, "each family once");
        let contentions = families
            .iter()
            .find(|f| f.name == "mapwatch_lock_contentions")
            .expect("contentions");
        let pids: Vec<&str> = contentions
            .samples
            .iter()
            .map(|s| s.labels[0].1.as_str())
            .collect();
        assert_eq!(pids, ["7", "8"]);
        let text = exposition::Exposition::render(&exposition::PrometheusText, &families);
        assert!(text.contains("mapwatch_targets 1.0\n"), "{text}");
        assert!(text.contains("mapwatch_recorder_bytes 4096.0\n"), "{text}");
        assert!(
            text.contains("mapwatch_recorder_dropped_seconds_total 0\n"),
            "{text}"
        );
        assert!(
            text.contains(r#"mapwatch_attach_errors_total{reason="plan"} 2"#),
            "{text}"
        );
    }

    #[test]
    fn headers_are_found_whatever_their_case() {
        let head = "GET /metrics HTTP/1.1\r\nHost: x\r\nACCEPT:  text/plain \r\n\r\n";
        assert_eq!(header(head, "accept"), Some("text/plain"));
        assert_eq!(header(head, "user-agent"), None);
    }
}
