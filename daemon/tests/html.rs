//! `--report FILE.html`: one self-contained page, rendered by headless
//! Chromium (Debian's package) to a PNG.

mod common;

use std::process::Command;

use common::*;

const CHROMIUM: &str = "/usr/bin/chromium";

#[test]
fn html_report_is_self_contained_and_renders_in_chromium() {
    assert!(
        std::path::Path::new(CHROMIUM).is_file(),
        "{CHROMIUM} missing: run `cargo xtask test` (it installs Debian's chromium)"
    );
    let dir = std::env::temp_dir().join(format!("mapwatch-html-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let page = dir.join("report.html");
    let workload = Workload::start(
        &fixture("1.27.3", "contend", false),
        &["-iterations", "5000"],
    );
    let tracer = Tracer::attach(workload.pid, &["--report", page.to_str().unwrap()]);
    workload.run_to_end();
    tracer.report();

    let html = std::fs::read_to_string(&page).expect("report written");
    assert!(html.starts_with("<!DOCTYPE html>") && html.trim_end().ends_with("</html>"));
    assert!(
        html.contains("main.hotMu") && html.contains("<svg"),
        "{html}"
    );
    assert!(
        html.contains("Lock wait time"),
        "the wait heatmap is inline"
    );
    // The maps: hot keys, the advisor's notes and the hot-key heatmap.
    assert!(
        html.contains("Hot keys of <code>main.syncMap</code>"),
        "{html}"
    );
    assert!(html.contains("<code>key-0</code>"), "{html}");
    assert!(html.contains("Advisor ("), "{html}");
    // Self-contained: nothing to fetch.
    for external in ["<script", "src=\"http", "href=\"http", "<link "] {
        assert!(!html.contains(external), "found {external}");
    }

    let png = dir.join("report.png");
    let out = Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1200,1600",
        ])
        .arg(format!("--user-data-dir={}", dir.join("profile").display()))
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let image = std::fs::read(&png).expect("screenshot written");
    assert!(image.starts_with(b"\x89PNG"), "not a PNG");
    assert!(
        image.len() > 20_000,
        "a rendered page, not a blank one: {} bytes",
        image.len()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
