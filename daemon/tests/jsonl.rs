//! `--jsonl FILE`: one JSON snapshot per second while attached.

mod common;

use common::*;
use serde_json::Value;

#[test]
fn snapshots_grow_once_per_second_up_to_the_report() {
    let path = std::env::temp_dir().join(format!("mapwatch-{}.jsonl", std::process::id()));
    let workload = Workload::start(
        &fixture("1.27.3", "contend", false),
        &["-iterations", "400000"],
    );
    let tracer = Tracer::attach(workload.pid, &["--jsonl", path.to_str().unwrap()]);
    workload.run_to_end();
    let report = tracer.report();
    let text = std::fs::read_to_string(&path).expect("JSONL written");
    let _ = std::fs::remove_file(&path);
    let lines: Vec<Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).expect("each line is one JSON object"))
        .collect();
    let duration = report["duration_seconds"].as_f64().unwrap();
    assert!(duration >= 2.0, "the run must span snapshots: {duration} s");
    assert!(
        lines.len() as f64 >= duration.floor() - 1.0,
        "{} lines in {duration} s",
        lines.len()
    );
    let hot = |snapshot: &Value| {
        snapshot["locks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["lock"] == "main.hotMu")
            .map_or(0, |l| l["contentions"].as_u64().unwrap())
    };
    let mut last = (0.0, 0);
    for snapshot in &lines {
        let now = (snapshot["elapsed_seconds"].as_f64().unwrap(), hot(snapshot));
        assert!(
            now.0 > last.0 && now.1 >= last.1,
            "snapshots go forward: {last:?} then {now:?}"
        );
        assert_eq!(snapshot["pid"], report["target"]["pid"]);
        last = now;
    }
    let final_count = lock_named(&report, "main.hotMu").unwrap()["contentions"]
        .as_u64()
        .unwrap();
    assert!(
        last.1 > 0 && last.1 <= final_count,
        "{last:?} vs {final_count}"
    );
}
