//! Writer convoys on a fixture that makes a known number of them: in each
//! episode, readers hold `main.rw`, `main.writer` asks for the write lock
//! and waits for them, and a known number of readers arrive behind it. The
//! report has every episode, the writer's call site, and exactly the
//! stalled readers (Go 1.23 and 1.27). Made a burst in an otherwise quiet
//! lock's timeline, the episodes are a spike whose context is a writer
//! convoy.

mod common;

use common::*;

#[test]
fn every_convoy_with_its_writer_and_stalled_readers() {
    for go in ["1.23.9", "1.27.3"] {
        let workload = Workload::start(&fixture(go, "convoy", false), &[]);
        let tracer = Tracer::attach(workload.pid, &[]);
        let truth = workload.run_to_end();
        let report = tracer.report();
        let what = format!("Go {go}");
        assert_nothing_lost(&report);
        let lock = lock_named(&report, "main.rw").expect("main.rw in the report");
        assert_eq!(lock["kind"], "rwmutex", "{what}: {lock:#}");
        let convoys = &lock["convoys"];
        let episodes = truth["episodes"].as_u64().expect("episodes");
        let late = truth["late_readers"].as_u64().expect("late_readers");
        assert_eq!(
            convoys["episodes"].as_u64(),
            Some(episodes),
            "{what}: {convoys:#}"
        );
        assert_eq!(
            convoys["max_readers_stalled"].as_u64(),
            Some(late),
            "{what}: {convoys:#}"
        );
        assert_eq!(
            convoys["readers_stalled"].as_u64(),
            Some(episodes * late),
            "{what}: {convoys:#}"
        );
        // The writer waited for the readers inside, who held the lock
        // 40 ms from before it asked.
        let hold = truth["reader_hold_seconds"].as_f64().expect("hold");
        let longest = convoys["longest_seconds"].as_f64().expect("longest");
        assert!(longest > hold / 2.0, "{what}: {convoys:#}");
        // The stalled readers waited about as long as the convoys lasted.
        let reader_wait = convoys["reader_wait_caused_seconds"]
            .as_f64()
            .expect("wait");
        assert!(reader_wait > 0.0, "{what}: {convoys:#}");
        let writer = &convoys["top_writer_sites"][0];
        let own = writer["frames"]
            .as_array()
            .expect("frames")
            .iter()
            .filter_map(|f| f.as_str())
            .find(|f| !f.starts_with("sync.") && !f.starts_with("internal/sync."))
            .unwrap_or_default()
            .to_string();
        assert!(own.starts_with("main.writer+"), "{what}: {writer:#}");
        assert_eq!(writer["episodes"].as_u64(), Some(episodes), "{what}");
    }
}

#[test]
fn a_burst_of_convoys_is_a_spike_of_writer_convoy() {
    for go in ["1.23.9", "1.27.3"] {
        let workload = Workload::start(&fixture(go, "convoy", false), &["-quiet", "2s"]);
        let tracer = Tracer::attach(workload.pid, &[]);
        let truth = workload.run_to_end();
        let report = tracer.report();
        let what = format!("Go {go}");
        assert_nothing_lost(&report);
        // Most of its waiting was the readers that queued behind the writer.
        let context = serde_json::json!("writer-convoy");
        let spike = worst_spike(&report, "main.rw", "main.lateReader", &context, &what);
        assert_spike_covers(
            &report,
            spike,
            &truth,
            ("episodes_start_unix", "episodes_end_unix"),
            &what,
        );
        // The timeline's convoy waits add up to the lock's.
        let rows: f64 = report["timeline"]
            .as_array()
            .expect("timeline")
            .iter()
            .filter(|r| r["name"] == "main.rw")
            .map(|r| r["convoy_wait_seconds"].as_f64().expect("convoy wait"))
            .sum();
        let lock = lock_named(&report, "main.rw").expect("main.rw");
        let total = lock["convoys"]["reader_wait_caused_seconds"]
            .as_f64()
            .expect("reader wait");
        assert!((rows - total).abs() < 1e-6, "{what}: {rows} vs {total}");
    }
}
