//! A real Prometheus server for the tests: Debian's `prometheus`, started on
//! loopback with a scrape config of one target, and PromQL queries through
//! its HTTP API.

use std::{
    io::{Read as _, Write as _},
    net::{TcpListener, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

/// Debian's promtool (with the prometheus package).
pub const PROMTOOL: &str = "/usr/bin/promtool";

use serde_json::Value;

/// Debian's Prometheus server (installed by `cargo xtask test`).
pub const PROMETHEUS: &str = "/usr/bin/prometheus";

/// A free loopback port (bound, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A Prometheus server scraping one target every second; killed (and its
/// data removed) when dropped.
pub struct Prometheus {
    child: Child,
    dir: PathBuf,
    /// Where its HTTP API listens.
    pub port: u16,
}

impl Prometheus {
    /// Starts Prometheus scraping `127.0.0.1:target_port` as job `mapwatch`.
    pub fn scraping(target_port: u16) -> Self {
        assert!(
            std::path::Path::new(PROMETHEUS).is_file(),
            "{PROMETHEUS} missing: run `cargo xtask test` (it installs Debian's prometheus)"
        );
        let port = free_port();
        let dir = std::env::temp_dir().join(format!(
            "mapwatch-prometheus-{}-{target_port}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a data directory");
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: mapwatch\n    static_configs:\n      - targets: ['127.0.0.1:{target_port}']\n"
            ),
        )
        .expect("the scrape config");
        let child = Command::new(PROMETHEUS)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus starts");
        Self { child, dir, port }
    }

    /// The value of an instant query's first sample, if any.
    pub fn query(&self, promql: &str) -> Option<f64> {
        let body = http_get(
            self.port,
            &format!("/api/v1/query?query={}", url_encode(promql)),
        )?;
        // Chunked transfer encoding: the JSON is between the first '{' and the last '}'.
        let json = &body[body.find('{')?..=body.rfind('}')?];
        let value: Value = serde_json::from_str(json).ok()?;
        value["data"]["result"][0]["value"][1]
            .as_str()?
            .parse()
            .ok()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `GET path` on 127.0.0.1:port; the response body of a 200.
pub fn http_get(port: u16, path: &str) -> Option<String> {
    let (status, body) = http_answer(port, path)?;
    (status == 200).then_some(body)
}

/// `GET path` from 127.0.0.1:`port`: the status code and the body.
pub fn http_answer(port: u16, path: &str) -> Option<(u16, String)> {
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
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
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

/// Asserts that `promtool check metrics` accepts a scrape.
pub fn assert_promtool_accepts(scrape: &str) {
    let mut promtool = Command::new(PROMTOOL)
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
        .write_all(scrape.as_bytes())
        .expect("promtool reads the scrape");
    let checked = promtool.wait_with_output().expect("promtool ends");
    assert!(
        checked.status.success(),
        "promtool check metrics: {}{}\n{scrape}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
}
