//! `--metrics`: a real Prometheus server (Debian's `prometheus`, started on
//! loopback by this test) scrapes mapwatch while it is attached, and a PromQL
//! query through Prometheus's HTTP API returns the fixture's contended lock
//! and hot key; a plain scrape passes `promtool check metrics`.

mod common;

use std::{
    io::{Read as _, Write as _},
    net::{TcpListener, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use common::*;
use serde_json::Value;

const PROMETHEUS: &str = "/usr/bin/prometheus";

/// A free loopback port (bound, then released).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `GET path` on 127.0.0.1:port; the response body.
fn http_get(port: u16, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_string())
}

/// Percent-encodes a PromQL query for a URL.
fn url_encode(query: &str) -> String {
    query
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'.' | b'-' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The value of an instant query's first sample, if any.
fn query(port: u16, promql: &str) -> Option<f64> {
    let body = http_get(port, &format!("/api/v1/query?query={}", url_encode(promql)))?;
    // Chunked transfer encoding: the JSON is between the first '{' and the last '}'.
    let json = &body[body.find('{')?..=body.rfind('}')?];
    let value: Value = serde_json::from_str(json).ok()?;
    value["data"]["result"][0]["value"][1]
        .as_str()?
        .parse()
        .ok()
}

#[test]
fn prometheus_scrapes_the_contended_lock() {
    assert!(
        std::path::Path::new(PROMETHEUS).is_file(),
        "{PROMETHEUS} missing: run `cargo xtask test` (it installs Debian's prometheus)"
    );
    let metrics_port = free_port();
    let prometheus_port = free_port();
    let dir: PathBuf =
        std::env::temp_dir().join(format!("mapwatch-prometheus-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: mapwatch\n    static_configs:\n      - targets: ['127.0.0.1:{metrics_port}']\n"
        ),
    )
    .unwrap();
    let _prometheus = Server(
        Command::new(PROMETHEUS)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prometheus_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus starts"),
    );

    // A long run: the test ends it once Prometheus has the figures.
    let workload = Workload::start(
        &fixture("1.27.3", "contend", false),
        &["-iterations", "2000000"],
    );
    let metrics_addr = format!("127.0.0.1:{metrics_port}");
    let tracer = Tracer::attach(
        workload.pid,
        &["--metrics", &metrics_addr, "--metrics-expose-keys"],
    );
    workload
        .child
        .stdin
        .as_ref()
        .map(|mut stdin| stdin.write_all(b"go\n"))
        .expect("stdin")
        .expect("start line");

    let deadline = Instant::now() + Duration::from_secs(60);
    // Every series names its target.
    let contentions = format!(
        r#"mapwatch_lock_contentions_total{{lock="main.hotMu",job="mapwatch",comm="contend",pid="{}"}}"#,
        workload.pid
    );
    let waits = r#"mapwatch_lock_wait_seconds_count{lock="main.hotMu"}"#;
    // The fixture's Zipf keys make key-0 the hottest key of main.syncMap.
    let hot_key = r#"mapwatch_hot_key_ops_total{map="main.syncMap",key="key-0"}"#;
    let (mut seen_contentions, mut seen_waits, mut seen_hot_key) = (None, None, None);
    while Instant::now() < deadline {
        seen_contentions = query(prometheus_port, &contentions).filter(|&v| v > 0.0);
        seen_waits = query(prometheus_port, waits).filter(|&v| v > 0.0);
        seen_hot_key = query(prometheus_port, hot_key).filter(|&v| v > 0.0);
        if seen_contentions.is_some() && seen_waits.is_some() && seen_hot_key.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let target_info = query(
        prometheus_port,
        r#"mapwatch_target_info{go_version="go1.27.3"}"#,
    );
    // A plain scrape (no Accept header, as curl sends) is the classic text
    // format, which promtool checks; Prometheus itself asked for and parsed
    // OpenMetrics above.
    let plain = http_get(metrics_port, "/metrics").expect("a plain scrape");
    drop(workload); // kills the fixture; mapwatch then stops and reports
    let report = tracer.report();
    assert!(
        seen_contentions.is_some(),
        "Prometheus never returned {contentions}: {report:#}"
    );
    assert!(seen_waits.is_some(), "Prometheus never returned {waits}");
    assert!(
        seen_hot_key.is_some(),
        "Prometheus never returned {hot_key}"
    );
    assert_eq!(target_info, Some(1.0));
    assert_eq!(report["stopped_by"], "target-exited");
    assert!(
        plain.contains("# TYPE mapwatch_target_info gauge"),
        "{plain}"
    );
    assert!(
        plain.contains("mapwatch_lock_contentions_total{pid=\""),
        "{plain}"
    );
    assert!(
        plain.contains("comm=\"contend\",lock=\"main.hotMu\""),
        "{plain}"
    );
    assert!(!plain.contains("# EOF"), "{plain}");
    let mut promtool = Command::new("/usr/bin/promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs: run `cargo xtask test`");
    promtool
        .stdin
        .take()
        .expect("stdin")
        .write_all(plain.as_bytes())
        .expect("promtool reads the scrape");
    let checked = promtool.wait_with_output().expect("promtool ends");
    assert!(
        checked.status.success(),
        "promtool check metrics: {}{}\n{plain}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn deploy_examples_are_valid() {
    let deploy = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy");
    // Debian's promtool (with the prometheus package) checks the scrape config.
    let out = Command::new("/usr/bin/promtool")
        .args(["check", "config"])
        .arg(deploy.join("prometheus.yml"))
        .output()
        .expect("promtool runs: run `cargo xtask test`");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // The Grafana dashboard: JSON, querying metrics mapwatch serves.
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(deploy.join("grafana-dashboard.json")).unwrap(),
    )
    .unwrap();
    let exprs: Vec<&str> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| {
            p["targets"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["expr"].as_str().unwrap())
        })
        .collect();
    for metric in [
        "mapwatch_lock_contentions_total",
        "mapwatch_lock_wait_seconds_bucket",
        "mapwatch_cas_failures_total",
        "mapwatch_events_lost_total",
        "mapwatch_map_ops_total",
        "mapwatch_hot_key_ops_total",
    ] {
        assert!(
            exprs.iter().any(|e| e.contains(metric)),
            "no panel uses {metric}"
        );
    }
}
