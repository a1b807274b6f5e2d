//! The report as a pprof profile (`profile.proto`, gzipped), readable by
//! `go tool pprof`: lock waits by call site and CAS failures by site.
//!
//! One profile with four sample types — `contentions`/count,
//! `delay`/nanoseconds, `cas_failures`/count, `cas_attempts`/count — so
//! `go tool pprof -sample_index=delay` shows where goroutines waited and
//! `-sample_index=cas_failures` where compare-and-swaps failed.

use std::{collections::HashMap, io::Write as _, path::Path};

use flate2::{write::GzEncoder, Compression};

use crate::report::Report;

/// Writes `report` as a gzipped pprof profile.
pub fn write(report: &Report, path: &Path) -> std::io::Result<()> {
    let bytes = encode(report);
    let mut gz = GzEncoder::new(Vec::new(), Compression::default());
    gz.write_all(&bytes)?;
    std::fs::write(path, gz.finish()?)
}

/// A frame as the report prints it: `function+0xOFF (file:line)`,
/// `function (file:line)` or a bare name/address.
fn parse_frame(frame: &str) -> (String, String, i64) {
    let (name, position) = match frame.rsplit_once(" (") {
        Some((name, rest)) => (name, rest.strip_suffix(')').unwrap_or(rest)),
        None => (frame, ""),
    };
    let function = name.split_once('+').map_or(name, |(f, _)| f).to_string();
    let (file, line) = match position.rsplit_once(':') {
        Some((file, line)) => (file.to_string(), line.parse().unwrap_or(0)),
        None => (position.to_string(), 0),
    };
    (function, file, line)
}

/// Builds `profile.proto` bytes.
pub fn encode(report: &Report) -> Vec<u8> {
    let mut p = ProfileBuilder::default();
    let sample_types = [
        ("contentions", "count"),
        ("delay", "nanoseconds"),
        ("cas_failures", "count"),
        ("cas_attempts", "count"),
    ];
    let mut out = Vec::new();
    for (kind, unit) in sample_types {
        let mut vt = Vec::new();
        field_varint(&mut vt, 1, p.string(kind));
        field_varint(&mut vt, 2, p.string(unit));
        field_bytes(&mut out, 1, &vt);
    }
    let mut samples: Vec<(Vec<u64>, [i64; 4])> = Vec::new();
    for lock in &report.locks {
        let lock_name = lock.name.clone().unwrap_or_else(|| lock.address.clone());
        for site in &lock.top_call_sites {
            let mut locations: Vec<u64> = site.frames.iter().map(|f| p.location(f)).collect();
            // The lock itself as the leaf, so profiles group by lock too.
            locations.insert(0, p.location(&format!("lock {lock_name}")));
            samples.push((
                locations,
                [site.count as i64, (site.wait_seconds * 1e9) as i64, 0, 0],
            ));
        }
    }
    for cas in &report.cas {
        let frame = match &cas.source {
            Some(source) => format!("{} ({source})", cas.site),
            None => cas.site.clone(),
        };
        let location = p.location(&frame);
        samples.push((
            vec![location],
            [0, 0, cas.failures as i64, cas.attempts as i64],
        ));
    }
    for (locations, values) in samples {
        let mut s = Vec::new();
        let mut ids = Vec::new();
        for id in locations {
            put_varint(&mut ids, id);
        }
        field_bytes(&mut s, 1, &ids);
        let mut vals = Vec::new();
        for v in values {
            put_varint(&mut vals, v as u64);
        }
        field_bytes(&mut s, 2, &vals);
        field_bytes(&mut out, 2, &s);
    }
    for (id, function_id, line) in &p.locations {
        let mut l = Vec::new();
        field_varint(&mut l, 1, *id);
        let mut ln = Vec::new();
        field_varint(&mut ln, 1, *function_id);
        field_varint(&mut ln, 2, *line as u64);
        field_bytes(&mut l, 4, &ln);
        field_bytes(&mut out, 4, &l);
    }
    for (id, name, file) in &p.functions {
        let mut f = Vec::new();
        field_varint(&mut f, 1, *id);
        field_varint(&mut f, 2, *name);
        field_varint(&mut f, 3, *name);
        field_varint(&mut f, 4, *file);
        field_bytes(&mut out, 5, &f);
    }
    for s in &p.strings {
        field_bytes(&mut out, 6, s.as_bytes());
    }
    field_varint(&mut out, 10, (report.duration_seconds * 1e9) as u64);
    field_varint(&mut out, 14, p.string("delay"));
    out
}

/// String table, functions and locations, deduplicated.
#[derive(Default)]
struct ProfileBuilder {
    strings: Vec<String>,
    string_ids: HashMap<String, u64>,
    functions: Vec<(u64, u64, u64)>,
    function_ids: HashMap<(String, String), u64>,
    locations: Vec<(u64, u64, i64)>,
    location_ids: HashMap<String, u64>,
}

impl ProfileBuilder {
    fn string(&mut self, s: &str) -> u64 {
        if self.strings.is_empty() {
            self.strings.push(String::new());
            self.string_ids.insert(String::new(), 0);
        }
        if let Some(&id) = self.string_ids.get(s) {
            return id;
        }
        let id = self.strings.len() as u64;
        self.strings.push(s.to_string());
        self.string_ids.insert(s.to_string(), id);
        id
    }

    fn location(&mut self, frame: &str) -> u64 {
        if let Some(&id) = self.location_ids.get(frame) {
            return id;
        }
        let (function, file, line) = parse_frame(frame);
        let function_id = match self.function_ids.get(&(function.clone(), file.clone())) {
            Some(&id) => id,
            None => {
                let id = self.functions.len() as u64 + 1;
                let (name, file_id) = (self.string(&function), self.string(&file));
                self.functions.push((id, name, file_id));
                self.function_ids.insert((function, file), id);
                id
            }
        };
        let id = self.locations.len() as u64 + 1;
        self.locations.push((id, function_id, line));
        self.location_ids.insert(frame.to_string(), id);
        id
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn field_varint(out: &mut Vec<u8>, field: u32, v: u64) {
    put_varint(out, u64::from(field) << 3);
    put_varint(out, v);
}

fn field_bytes(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    put_varint(out, (u64::from(field) << 3) | 2);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_and_frames() {
        let mut v = Vec::new();
        put_varint(&mut v, 300);
        assert_eq!(v, [0xac, 0x02]);
        assert_eq!(
            parse_frame("main.f+0x1a (/src/main.go:12)"),
            ("main.f".to_string(), "/src/main.go".to_string(), 12)
        );
        assert_eq!(
            parse_frame("sync.(*Mutex).Lock (/go/src/sync/mutex.go:46)"),
            (
                "sync.(*Mutex).Lock".to_string(),
                "/go/src/sync/mutex.go".to_string(),
                46
            )
        );
        assert_eq!(
            parse_frame("0x4000"),
            ("0x4000".to_string(), String::new(), 0)
        );
    }
}
