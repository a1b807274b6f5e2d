//! The maps section of the report: per map its operations, hot keys and the
//! advisor's findings, and the hot-key heatmaps.

use std::collections::{BTreeMap, HashMap};

use probe_common::MapOp;
use serde::Serialize;

use super::heatmap::Heatmap;
use crate::{
    advisor::{self, Advice, MapMix},
    aggregate::maps::{is_user_op, HotKey, KeyTag, MapAggregate, MapStats},
    plan::maps::MapKind,
    target::Target,
};

/// How reports name the nil map (loads from a nil map are legal Go).
pub const NIL_MAP: &str = "(nil map)";

/// Hot keys listed per map.
pub const TOP_KEYS: usize = 10;
/// Maps listed.
pub const MAX_MAPS: usize = 50;
/// Rows of a hot-key heatmap.
pub const HEATMAP_KEYS: usize = 10;

/// One map.
#[derive(Debug, Clone, Serialize)]
pub struct MapReport {
    /// The global variable that is (sync.Map) or holds (map) it, or null.
    pub name: Option<String>,
    /// Its runtime address (hex): the `sync.Map`, or the runtime map's
    /// header. `--map` accepts it.
    pub address: String,
    /// `sync.Map` or `map`.
    pub kind: MapKind,
    /// User-level operations by name (`load`, `store`, …), non-zero only.
    pub ops: BTreeMap<&'static str, u64>,
    /// Their sum.
    pub total: u64,
    /// Internal events (`miss`, `dirty_copy` up to Go 1.23; `expand` from
    /// Go 1.24), non-zero only.
    pub internal: BTreeMap<&'static str, u64>,
    /// Whether keys were recorded (else the map was only counted: select it
    /// with `--map` for keys).
    pub keyed: bool,
    /// Operations per CPU (keyed maps).
    pub per_cpu: Vec<u64>,
    /// Estimated distinct keys seen (HyperLogLog, about ±2%).
    pub distinct_keys: u64,
    /// The busiest keys, most operations first.
    pub top_keys: Vec<KeyReport>,
    /// Keys kept per map: counts are exact while no more distinct keys than
    /// this were seen.
    pub top_k_capacity: usize,
    /// The most any listed count can overestimate (0: all exact).
    pub top_k_error_bound: u64,
    /// The advisor's findings.
    pub advice: Vec<Advice>,
}

/// One hot key.
#[derive(Debug, Clone, Serialize)]
pub struct KeyReport {
    /// The key: string keys verbatim (cut keys end in `…`), integers in
    /// decimal, pointers in hex, other types as `TYPE#HASH`.
    pub key: String,
    /// Operations by name, non-zero only.
    pub ops: BTreeMap<&'static str, u64>,
    /// Their sum.
    pub total: u64,
    /// Whether the counts are exact (the key was kept since its first
    /// operation); else `total` may overestimate by up to `error`.
    pub exact: bool,
    /// The largest possible overestimate.
    pub error: u64,
    /// Operations per CPU.
    pub per_cpu: Vec<u64>,
}

/// Names a map: a `sync.Map` by the global it is, a runtime map by the
/// pointer-sized global holding it (`pointers`: value → name).
pub fn map_name(target: &Target, pointers: &HashMap<u64, String>, address: u64) -> Option<String> {
    if address == 0 {
        // Go allows loads from (and deletes in) a nil map.
        return Some(NIL_MAP.to_string());
    }
    pointers.get(&address).cloned().or_else(|| {
        target
            .global_name(address)
            .filter(|name| !name.contains('+'))
    })
}

/// Displays a key, naming the type of `TYPE#HASH` keys.
pub fn key_text(target: &Target, key: &HotKey) -> String {
    match key.tag {
        KeyTag::Other => {
            let (typ, hash) = key.text.split_once('#').unwrap_or((&key.text, ""));
            let name = u64::from_str_radix(typ.trim_start_matches("0x"), 16)
                .ok()
                .and_then(|address| target.global_name(address))
                .map(|name| {
                    name.trim_start_matches("type:")
                        .trim_start_matches("type.")
                        .to_string()
                })
                .unwrap_or_else(|| "key".to_string());
            format!("{name}#{}", &hash[..hash.len().min(12)])
        }
        _ => key.text.to_string(),
    }
}

fn op_counts(ops: &[u64]) -> BTreeMap<&'static str, u64> {
    MapOp::ALL
        .iter()
        .filter(|op| is_user_op(**op))
        .filter_map(|&op| {
            let count = ops.get(op as usize).copied().unwrap_or(0);
            (count > 0).then_some((op.name(), count))
        })
        .collect()
}

/// The report of every map, busiest first, and a hot-key heatmap per keyed
/// map (at most a few).
pub fn build(
    target: &Target,
    maps: &MapAggregate,
    pointers: &HashMap<u64, String>,
) -> (Vec<MapReport>, Vec<Heatmap>) {
    let mut reports = Vec::new();
    let mut heatmaps = Vec::new();
    let mut ordered: Vec<(&u64, &MapStats)> = maps.maps.iter().collect();
    ordered.sort_by_key(|(address, stats)| (std::cmp::Reverse(stats.total_ops()), **address));
    for (&address, stats) in ordered.into_iter().take(MAX_MAPS) {
        let name = map_name(target, pointers, address);
        let label = name.clone().unwrap_or_else(|| format!("{address:#x}"));
        let total = stats.total_ops();
        let mut top_keys = Vec::new();
        let (capacity, bound) = match &stats.keys {
            Some(keys) => (keys.capacity(), keys.error_bound()),
            None => (0, 0),
        };
        if let Some(keys) = &stats.keys {
            let top = keys.top(TOP_KEYS.max(HEATMAP_KEYS));
            for entry in top.iter().take(TOP_KEYS) {
                top_keys.push(KeyReport {
                    key: key_text(target, &entry.key),
                    ops: op_counts(&entry.payload.ops),
                    total: entry.payload.ops.iter().sum(),
                    exact: entry.error == 0,
                    error: entry.error,
                    per_cpu: entry.payload.per_cpu.clone(),
                });
            }
            let columns = top.iter().map(|e| e.payload.cells.len()).max().unwrap_or(0);
            if columns > 0 && heatmaps.len() < 8 {
                let mut heatmap = Heatmap::new(
                    format!("Hot keys of {label}"),
                    "key",
                    maps.column_scale as f64,
                    Vec::new(),
                    columns,
                );
                for entry in top.iter().take(HEATMAP_KEYS) {
                    let row = heatmap.add_row(key_text(target, &entry.key));
                    for (column, &count) in entry.payload.cells.iter().enumerate() {
                        heatmap.add(row, column, count);
                    }
                }
                heatmaps.push(heatmap);
            }
        }
        let mix = mix_of(stats, top_keys.first());
        let internal = [MapOp::Miss, MapOp::DirtyCopy, MapOp::Expand]
            .iter()
            .filter_map(|&op| {
                let count = stats.ops[op as usize];
                (count > 0).then_some((op.name(), count))
            })
            .collect();
        reports.push(MapReport {
            name,
            address: format!("{address:#x}"),
            kind: stats.kind,
            ops: op_counts(&stats.ops),
            total,
            internal,
            keyed: stats.keyed,
            per_cpu: stats.per_cpu.clone(),
            distinct_keys: if stats.keyed {
                stats.distinct_keys.estimate()
            } else {
                0
            },
            top_keys,
            top_k_capacity: capacity,
            top_k_error_bound: bound,
            advice: if stats.keyed {
                advisor::advise(&mix)
            } else {
                Vec::new()
            },
        });
    }
    (reports, heatmaps)
}

/// The advisor's view of one map.
fn mix_of(stats: &MapStats, hottest: Option<&KeyReport>) -> MapMix {
    let mut mix = MapMix {
        kind: Some(stats.kind),
        total: stats.total_ops(),
        distinct_written: stats.distinct_written.estimate(),
        keyed_writes: stats.keyed_writes,
        misses: stats.ops[MapOp::Miss as usize],
        dirty_copies: stats.ops[MapOp::DirtyCopy as usize],
        expansions: stats.ops[MapOp::Expand as usize],
        cpus: stats.per_cpu.iter().filter(|&&n| n > 0).count(),
        hottest: hottest.map(|key| {
            (
                key.key.clone(),
                key.total,
                key.per_cpu.iter().filter(|&&n| n > 0).count(),
            )
        }),
        ..MapMix::default()
    };
    for op in MapOp::ALL {
        let count = stats.ops[op as usize];
        match advisor::op_class(op) {
            Some("load") => mix.loads += count,
            Some("write") => mix.writes += count,
            Some("delete") => mix.deletes += count,
            _ => {}
        }
    }
    mix
}
