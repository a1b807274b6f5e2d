//! The JSON report (`--format json`): the snapshot as one document, with
//! addresses in hex, enums by their report names, frames and keys as text.

use std::io;

use super::Format;
use crate::model::Snapshot;

/// The JSON report.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonReport;

impl Format for JsonReport {
    fn write(&self, report: &Snapshot, out: &mut dyn io::Write) -> io::Result<()> {
        serde_json::to_writer_pretty(&mut *out, report).map_err(io::Error::other)?;
        out.write_all(b"\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_keeps_its_field_names_and_forms() {
        let mut out = Vec::new();
        JsonReport
            .write(&crate::view::sample_snapshot(), &mut out)
            .unwrap();
        let json: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(json["stopped_by"], "target-exited");
        assert_eq!(json["target"]["go_version"], "go1.27.3");
        let lock = &json["locks"][0];
        assert_eq!(lock["address"], "0xc0001000");
        assert_eq!(lock["kind"], "mutex");
        assert_eq!(
            lock["top_call_sites"][0]["frames"][1],
            "main.worker+0x2c (/src/main.go:12)"
        );
        assert!(lock.get("reader_wait_seconds_total").is_none());
        assert_eq!(json["probes"][0]["kind"], "lock-entry");
        assert_eq!(json["probes"][0]["site"], "emulated");
        assert_eq!(json["probes"][0]["skip_when"], "below-or-equal");
        assert_eq!(json["probes"][0]["address"], "0x476184");
        let map = &json["maps"][0];
        assert_eq!(map["kind"], "map");
        assert_eq!(map["ops"]["load"], 100);
        assert_eq!(map["top_keys"][0]["key"], "k1");
        let cas = &json["cas"][0];
        assert_eq!(cas["site"], "main.f+0x10");
        assert_eq!(cas["source"], "/src/main.go:30");
        assert!(cas["probe"].as_str().unwrap().starts_with("je at 0x40101a"));
        assert_eq!(json["heatmaps"][0]["title"], "CAS failures by site");
        assert_eq!(json["heatmaps"][0]["rows"][0], "main.f+0x10");
    }
}
