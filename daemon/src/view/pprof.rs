//! The report as a pprof profile (`profile.proto`, gzipped), readable by
//! `go tool pprof`: lock waits by call site and CAS failures by site.
//!
//! One profile with four sample types — `contentions`/count,
//! `delay`/nanoseconds, `cas_failures`/count, `cas_attempts`/count — so
//! `go tool pprof -sample_index=delay` shows where goroutines waited and
//! `-sample_index=cas_failures` where compare-and-swaps failed.
//!
//! Frames carry their runtime addresses in the executable's mapping, with
//! its file name and build ID: a frame mapwatch could not name (a stripped
//! binary without its debug file) has no line, and `pprof` names it later
//! from the debug file (`PPROF_BINARY_PATH=/usr/lib/debug/.build-id`).

use std::{collections::HashMap, io, io::Write as _};

use flate2::{write::GzEncoder, Compression};

use super::Format;
use crate::model::{Frame, Snapshot};

/// The gzipped pprof profile.
#[derive(Debug, Clone, Copy, Default)]
pub struct PprofReport;

impl Format for PprofReport {
    fn write(&self, report: &Snapshot, out: &mut dyn io::Write) -> io::Result<()> {
        let mut gz = GzEncoder::new(Vec::new(), Compression::default());
        gz.write_all(&encode(report))?;
        out.write_all(&gz.finish()?)
    }
}

/// A location of the profile: a function at a line of a file, and the
/// runtime address it was found at (0 for places of no code).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Place {
    function: String,
    file: String,
    line: i64,
    address: u64,
}

impl Place {
    /// The place of a stack frame (the function's name without offset).
    fn of(frame: &Frame) -> Self {
        let (file, line) = frame
            .source
            .as_ref()
            .map_or((String::new(), 0), |s| (s.file.clone(), i64::from(s.line)));
        Self {
            function: frame.function.clone().unwrap_or_default(),
            file,
            line,
            address: frame.address,
        }
    }

    /// A synthetic place with only a name.
    fn named(name: String) -> Self {
        Self {
            function: name,
            file: String::new(),
            line: 0,
            address: 0,
        }
    }
}

/// Builds `profile.proto` bytes.
pub fn encode(report: &Snapshot) -> Vec<u8> {
    let mut p = ProfileBuilder::default();
    let sample_types = [
        ("contentions", "count"),
        ("delay", "nanoseconds"),
        ("cas_failures", "count"),
        ("cas_attempts", "count"),
        ("holder_delay", "nanoseconds"),
        ("holder_releases", "count"),
    ];
    let mut out = Vec::new();
    for (kind, unit) in sample_types {
        let mut vt = Vec::new();
        field_varint(&mut vt, 1, p.string(kind));
        field_varint(&mut vt, 2, p.string(unit));
        field_bytes(&mut out, 1, &vt);
    }
    let mut samples: Vec<(Vec<u64>, [i64; 6])> = Vec::new();
    for lock in &report.locks {
        let lock_name = lock
            .name
            .clone()
            .unwrap_or_else(|| format!("{:#x}", lock.address));
        // The lock itself as the leaf, so profiles group by lock too.
        let stack = |p: &mut ProfileBuilder, frames: &[Frame]| {
            std::iter::once(p.location(Place::named(format!("lock {lock_name}"))))
                .chain(frames.iter().map(|f| p.location(Place::of(f))))
                .collect::<Vec<u64>>()
        };
        for site in &lock.top_call_sites {
            samples.push((
                stack(&mut p, &site.frames),
                [
                    site.count as i64,
                    (site.wait_seconds * 1e9) as i64,
                    0,
                    0,
                    0,
                    0,
                ],
            ));
        }
        // Holders: the stacks that released the lock to its waiters, with
        // the waiting each ended (what Go's own mutex profile calls delay,
        // there sampled and blamed on the unlocker).
        for site in &lock.top_holder_sites {
            samples.push((
                stack(&mut p, &site.frames),
                [
                    0,
                    0,
                    0,
                    0,
                    (site.wait_caused_seconds * 1e9) as i64,
                    site.releases as i64,
                ],
            ));
        }
    }
    for cas in &report.cas {
        let place = match &cas.source {
            Some(source) => Place {
                function: cas.site.to_string(),
                file: source.file.clone(),
                line: i64::from(source.line),
                address: 0,
            },
            None => Place::named(cas.site.to_string()),
        };
        let location = p.location(place);
        samples.push((
            vec![location],
            [0, 0, cas.failures as i64, cas.attempts as i64, 0, 0],
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
    let modules = &report.target.modules;
    for (index, module) in modules.iter().enumerate() {
        let mut m = Vec::new();
        field_varint(&mut m, 1, index as u64 + 1);
        field_varint(&mut m, 2, module.start);
        field_varint(&mut m, 3, module.limit);
        field_varint(&mut m, 4, module.file_offset);
        field_varint(&mut m, 5, p.string(&module.file));
        field_varint(
            &mut m,
            6,
            p.string(module.build_id.as_deref().unwrap_or("")),
        );
        field_varint(&mut m, 7, u64::from(module.has_functions));
        field_varint(&mut m, 8, u64::from(module.has_functions));
        field_varint(&mut m, 9, u64::from(module.has_functions));
        field_bytes(&mut out, 3, &m);
    }
    for (id, function_id, line, address) in &p.locations {
        let mut l = Vec::new();
        field_varint(&mut l, 1, *id);
        if *address != 0 {
            if let Some(index) = modules
                .iter()
                .position(|m| (m.start..m.limit).contains(address))
            {
                field_varint(&mut l, 2, index as u64 + 1);
            }
            field_varint(&mut l, 3, *address);
        }
        // A frame mapwatch could not name is left for pprof to name.
        if let Some(function_id) = function_id {
            let mut ln = Vec::new();
            field_varint(&mut ln, 1, *function_id);
            field_varint(&mut ln, 2, *line as u64);
            field_bytes(&mut l, 4, &ln);
        }
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
    /// (id, function id unless unnamed, line, address).
    locations: Vec<(u64, Option<u64>, i64, u64)>,
    location_ids: HashMap<Place, u64>,
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

    fn location(&mut self, place: Place) -> u64 {
        if let Some(&id) = self.location_ids.get(&place) {
            return id;
        }
        let key = (place.function.clone(), place.file.clone());
        let function_id = match self.function_ids.get(&key) {
            _ if place.function.is_empty() => None,
            Some(&id) => Some(id),
            None => {
                let id = self.functions.len() as u64 + 1;
                let (name, file_id) = (self.string(&place.function), self.string(&place.file));
                self.functions.push((id, name, file_id));
                self.function_ids.insert(key, id);
                Some(id)
            }
        };
        let id = self.locations.len() as u64 + 1;
        self.locations
            .push((id, function_id, place.line, place.address));
        self.location_ids.insert(place, id);
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
    fn varints() {
        let mut v = Vec::new();
        put_varint(&mut v, 300);
        assert_eq!(v, [0xac, 0x02]);
    }

    #[test]
    fn frames_become_places_without_offsets() {
        let report = crate::view::sample_snapshot();
        let frames = &report.locks[0].top_call_sites[0].frames;
        assert_eq!(
            Place::of(&frames[1]),
            Place {
                function: "main.worker".into(),
                file: "/src/main.go".into(),
                line: 12,
                address: frames[1].address,
            }
        );
        // An unnamed frame is left to pprof: no function, its address.
        let unknown = Place::of(&Frame::unknown(0x4000));
        assert_eq!((unknown.function.as_str(), unknown.address), ("", 0x4000));
        let bytes = encode(&report);
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains("lock main.hotMu") && text.contains("main.worker"));
    }
}
