//! `--metrics`: a real Prometheus server (Debian's `prometheus`, started on
//! loopback by this test) scrapes mapwatch while it is attached, and a PromQL
//! query through Prometheus's HTTP API returns the fixture's contended lock
//! and hot key; a plain scrape passes `promtool check metrics`.

mod common;

use std::{
    io::Write as _,
    process::Command,
    time::{Duration, Instant},
};

use common::{prom::*, *};
use serde_json::Value;

#[test]
fn prometheus_scrapes_the_contended_lock() {
    let metrics_port = free_port();
    let prometheus = Prometheus::scraping(metrics_port);

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
        seen_contentions = prometheus.query(&contentions).filter(|&v| v > 0.0);
        seen_waits = prometheus.query(waits).filter(|&v| v > 0.0);
        seen_hot_key = prometheus.query(hot_key).filter(|&v| v > 0.0);
        if seen_contentions.is_some() && seen_waits.is_some() && seen_hot_key.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let target_info = prometheus.query(r#"mapwatch_target_info{go_version="go1.27.3"}"#);
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
    assert_promtool_accepts(&plain);
}

#[test]
fn deploy_examples_are_valid() {
    let deploy = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy");
    // Debian's promtool (with the prometheus package) checks the scrape config.
    let out = Command::new(PROMTOOL)
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
        "mapwatch_run_queue_wait_seconds_bucket",
        "mapwatch_go_pause_seconds_total",
        "mapwatch_map_entries",
        "mapwatch_map_grows_total",
        "mapwatch_map_load_factor",
        "mapwatch_map_tombstone_ratio",
    ] {
        assert!(
            exprs.iter().any(|e| e.contains(metric)),
            "no panel uses {metric}"
        );
    }
}
