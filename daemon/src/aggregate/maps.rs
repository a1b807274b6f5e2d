//! Map operations: per map, counts by operation, per CPU and over time,
//! hot keys (bounded top-K with per-key operation counts, per-CPU counts and
//! a time row), and distinct-key estimates.
//!
//! Memory is bounded whatever the target does: at most [`MAX_KEYED_MAPS`]
//! maps keep keys, each in a [`SpaceSaving`] table of
//! [`MapAggregate::key_capacity`] entries, whose time rows have at most
//! [`MAX_KEY_COLUMNS`] cells (columns widen when a session outgrows them).

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
};

use probe_common::{
    KeyCounts, KeyCountsKey, KeyKind, MapCounts, MapEvent, MapOp, MAP_OPS, SYNC_MAP_COUNT_FLAG,
};

use super::topk::{HyperLogLog, SpaceSaving};
use crate::{
    goruntime::kind,
    maphealth::{HealthError, MapDetail, MapStructure},
    model::{hash::stable_hash as hash64, Key, MapHealth, MapImplementation, MapKind},
    target::Symbolizer,
};

/// Maps whose keys are tracked; operations on further maps are counted
/// without keys.
pub const MAX_KEYED_MAPS: usize = 256;
/// Default number of keys kept per map (exact while a map sees no more
/// distinct keys than this).
pub const DEFAULT_KEY_CAPACITY: usize = 1024;
/// Most time cells in a key's row: the column width doubles when needed.
pub const MAX_KEY_COLUMNS: usize = 64;

/// A key as decoded from an event, before the report names its type.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RawKey {
    /// A string (its first bytes when `truncated`).
    Str {
        /// The bytes copied, as text.
        text: Box<str>,
        /// Whether the key was longer.
        truncated: bool,
    },
    /// A signed integer.
    Signed(i64),
    /// An unsigned integer.
    Unsigned(u64),
    /// A pointer-shaped value.
    Pointer(u64),
    /// Another type: its type descriptor's runtime address and a hash of
    /// the bytes copied.
    Other {
        /// The key type's `*abi.Type` (runtime address).
        key_type: u64,
        /// The bytes' hash.
        hash: u64,
    },
    /// The key's memory could not be read.
    Unreadable,
}

impl RawKey {
    /// The key for reports, its type named through the symbols.
    pub fn to_key(&self, symbolizer: Option<&Symbolizer>) -> Key {
        match self {
            Self::Str { text, truncated } => Key::Str {
                text: text.to_string(),
                truncated: *truncated,
            },
            Self::Signed(v) => Key::Signed(*v),
            Self::Unsigned(v) => Key::Unsigned(*v),
            Self::Pointer(v) => Key::Pointer(*v),
            Self::Other { key_type, hash } => Key::Other {
                type_name: symbolizer.and_then(|s| s.type_name(*key_type)),
                hash: *hash,
            },
            Self::Unreadable => Key::Unreadable,
        }
    }
}

/// What a kept key carries besides its count.
#[derive(Debug, Clone, Default)]
pub struct KeyPayload {
    /// Operations by [`MapOp`].
    pub ops: [u64; MAP_OPS],
    /// Operations per CPU.
    pub per_cpu: Vec<u64>,
    /// Operations per time cell (see [`MapAggregate::column_scale`]); cells
    /// before the key entered the table are 0.
    pub cells: Vec<u64>,
}

/// One map's figures.
#[derive(Debug, Clone)]
pub struct MapStats {
    /// `sync.Map` or runtime map.
    pub kind: MapKind,
    /// Operations by [`MapOp`] with their key (events and the kernel's key
    /// table).
    pub ops: [u64; MAP_OPS],
    /// Operations by [`MapOp`] counted per map only (maps whose keys are
    /// not recorded, and operations whose key was not sampled).
    pub counted_ops: [u64; MAP_OPS],
    /// Operations per CPU (events only).
    pub per_cpu: Vec<u64>,
    /// Hot keys, `None` for maps beyond [`MAX_KEYED_MAPS`] or counted only
    /// in the kernel.
    pub keys: Option<SpaceSaving<RawKey, KeyPayload>>,
    /// Distinct keys seen (estimate).
    pub distinct_keys: HyperLogLog,
    /// Distinct keys written (stores, swaps, load-or-stores; estimate).
    pub distinct_written: HyperLogLog,
    /// Writes seen with a key.
    pub keyed_writes: u64,
    /// Whether operations of this map came as events (keys known).
    pub keyed: bool,
    /// Keyed operations counted (exact), and the same with each weighted
    /// by the key sampling in force ([`MapAggregate::set_key_weight`]): the
    /// keys' figures are estimates when these differ.
    pub keyed_ops_seen: u64,
    /// See `keyed_ops_seen`.
    pub keyed_ops_weighted: u64,
}

impl MapStats {
    fn new(kind: MapKind) -> Self {
        Self {
            kind,
            ops: [0; MAP_OPS],
            counted_ops: [0; MAP_OPS],
            per_cpu: Vec::new(),
            keys: None,
            distinct_keys: HyperLogLog::default(),
            distinct_written: HyperLogLog::default(),
            keyed_writes: 0,
            keyed: false,
            keyed_ops_seen: 0,
            keyed_ops_weighted: 0,
        }
    }

    /// Every operation by [`MapOp`]: with their key and per map only.
    pub fn all_ops(&self) -> [u64; MAP_OPS] {
        let mut all = self.ops;
        for (total, counted) in all.iter_mut().zip(self.counted_ops) {
            *total += counted;
        }
        all
    }

    /// All user-level operations (internal events left out).
    pub fn total_ops(&self) -> u64 {
        let all = self.all_ops();
        MapOp::ALL
            .iter()
            .filter(|op| op.is_user_op())
            .map(|&op| all[op as usize])
            .sum()
    }
}

/// One reading of a runtime map's structure, as the pipeline took it.
#[derive(Debug, Clone)]
pub enum HealthReading {
    /// Read.
    Read {
        /// What it holds.
        structure: MapStructure,
        /// How long the reading took, ns.
        cost_ns: u64,
    },
    /// The memory no longer holds the map (freed or reused).
    Failed(HealthError),
    /// The variable that selected it now holds another map.
    Replaced,
}

/// A map's readings so far.
#[derive(Debug, Clone)]
pub struct HealthRecord {
    /// How the map is laid out.
    pub implementation: MapImplementation,
    /// The last good reading, its time column and cost.
    pub last: Option<(MapStructure, u64, u64)>,
    /// Readings taken.
    pub readings: u64,
    /// Of them, failed ones.
    pub failed: u64,
    /// The last reading's error, if it failed.
    pub error: Option<HealthError>,
    /// Whether the map was replaced (and read no more).
    pub replaced: bool,
    /// The most entries seen.
    pub peak_entries: u64,
    /// A `sync.Map`'s promotions, as its dirty copies and readings tell
    /// them.
    pub promotions: Option<PromotionTrack>,
}

/// What a `sync.Map`'s readings and dirty copies say of its promotions.
///
/// The map alternates: a store of a new key while the read-only map is
/// complete copies it into a new dirty map (`dirtyLocked`, counted exactly
/// as `dirty_copy`) and marks it amended; a promotion (enough misses, or a
/// `Range`) makes the dirty map the read-only one and drops it, no longer
/// amended. So between two readings, promotions = dirty copies + (amended
/// at the first) − (amended at the second): exact, given the copies (a
/// `Clear` of an amended map drops the dirty map too and counts as one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PromotionTrack {
    /// Time column, dirty copies counted and `amended` at the first
    /// reading.
    pub first: (u64, u64, bool),
    /// The same at the last reading.
    pub last: (u64, u64, bool),
    /// Entries copied into dirty maps between the first and last reading
    /// (an estimate: each copy taken as big as the read-only map at the
    /// reading after it).
    pub entries_copied: u64,
}

/// Promotions while a `sync.Map` made `copies` dirty copies, amended or not
/// at the start and at the end (see [`PromotionTrack`]).
fn promotions(copies: u64, amended_first: bool, amended_last: bool) -> u64 {
    (copies + u64::from(amended_first)).saturating_sub(u64::from(amended_last))
}

impl PromotionTrack {
    /// Promotions while watched, given `copies` dirty copies counted in all
    /// (the first reading is taken as the map's state when watching began:
    /// exactly so for maps selected with `--map`, read before the probes
    /// count).
    pub fn promotions(&self, copies: u64) -> u64 {
        promotions(copies, self.first.2, self.last.2)
    }

    /// Promotions and entries copied per second between the first and the
    /// last reading (`None` before two readings a second apart).
    pub fn rates(&self) -> Option<(f64, f64)> {
        let seconds = self.last.0.checked_sub(self.first.0).filter(|&s| s > 0)? as f64;
        let promotions = promotions(
            self.last.1.saturating_sub(self.first.1),
            self.first.2,
            self.last.2,
        );
        Some((
            promotions as f64 / seconds,
            self.entries_copied as f64 / seconds,
        ))
    }
}

impl HealthRecord {
    /// No readings yet of a map laid out as `implementation`.
    pub fn new(implementation: MapImplementation) -> Self {
        Self {
            implementation,
            last: None,
            readings: 0,
            failed: 0,
            error: None,
            replaced: false,
            peak_entries: 0,
            promotions: None,
        }
    }

    /// The report of the readings so far, for a map whose operations
    /// counted so far are `ops` (its growths, its dirty copies).
    pub fn report(&self, ops: &[u64; MAP_OPS]) -> MapHealth {
        let grows = ops[MapOp::Grow as usize];
        let copies = ops[MapOp::DirtyCopy as usize];
        let last = self.last.as_ref();
        let structure = last.map(|(s, _, _)| s);
        // The fields of one implementation.
        let (buckets, overflow_buckets, longest_chain, growing) = match structure.map(|s| &s.detail)
        {
            Some(&MapDetail::Buckets {
                log_buckets,
                overflow_buckets,
                longest_chain,
                growing,
            }) => (
                Some(1u64 << log_buckets),
                Some(overflow_buckets),
                Some(longest_chain),
                Some(growing),
            ),
            _ => (None, None, None, None),
        };
        let (tables, directory, growth_left) = match structure.map(|s| &s.detail) {
            Some(&MapDetail::Swiss {
                directory,
                tables,
                growth_left,
                ..
            }) => (Some(tables), Some(directory), Some(growth_left)),
            _ => (None, None, None),
        };
        let (read_entries, dirty_entries, amended, misses) = match structure.map(|s| &s.detail) {
            Some(&MapDetail::SyncMap {
                read_entries,
                dirty_entries,
                amended,
                misses,
            }) => (
                Some(read_entries),
                Some(dirty_entries),
                Some(amended),
                Some(misses),
            ),
            _ => (None, None, None, None),
        };
        let rates = self.promotions.as_ref().and_then(PromotionTrack::rates);
        MapHealth {
            implementation: self.implementation,
            entries: structure.map_or(0, |s| s.entries),
            peak_entries: self.peak_entries,
            grows,
            capacity: structure.map_or(0, |s| s.capacity),
            load_factor: structure.map_or(0.0, MapStructure::load_factor),
            tombstones: structure.map_or(0, |s| s.tombstones),
            tombstone_ratio: structure.map_or(0.0, MapStructure::tombstone_ratio),
            buckets,
            overflow_buckets,
            longest_chain,
            growing,
            tables,
            directory,
            growth_left,
            read_entries,
            dirty_entries,
            amended,
            misses,
            promotions: self.promotions.map(|p| p.promotions(copies)),
            promotions_per_second: rates.map(|r| r.0),
            entries_copied_per_second: rates.map(|r| r.1),
            occupancy: structure.map(|s| s.occupancy.clone()).unwrap_or_default(),
            skew: structure.and_then(MapStructure::skew),
            complete: structure.is_some_and(|s| s.complete),
            consistent: structure.is_some_and(|s| s.consistent),
            readings: self.readings,
            failed_readings: self.failed,
            error: self.error.as_ref().map(ToString::to_string),
            replaced: self.replaced,
            sampled_at: last.map_or(0.0, |&(_, column, _)| column as f64),
            bytes_read: structure.map_or(0, |s| s.bytes_read),
            read_microseconds: last.map_or(0.0, |&(_, _, ns)| ns as f64 / 1e3),
        }
    }

    /// Folds in one reading taken in time column `column`, when the map's
    /// dirty copies counted so far were `copies`.
    pub fn add(&mut self, reading: HealthReading, column: u64, copies: u64) {
        match reading {
            HealthReading::Read { structure, cost_ns } => {
                if let MapDetail::SyncMap {
                    read_entries,
                    amended,
                    ..
                } = structure.detail
                {
                    let now = (column, copies, amended);
                    let track = self.promotions.get_or_insert(PromotionTrack {
                        first: now,
                        last: now,
                        entries_copied: 0,
                    });
                    track.entries_copied += copies.saturating_sub(track.last.1) * read_entries;
                    track.last = now;
                }
                self.readings += 1;
                self.error = None;
                self.peak_entries = self.peak_entries.max(structure.entries);
                self.last = Some((structure, column, cost_ns));
            }
            HealthReading::Failed(error) => {
                self.readings += 1;
                self.failed += 1;
                self.error = Some(error);
            }
            HealthReading::Replaced => self.replaced = true,
        }
    }
}

/// Names the user-level `sync.Map` operation of a call from its caller's
/// return address (runtime address), or `None` to keep the probed one.
pub type OpResolver = Arc<dyn Fn(u64) -> Option<MapOp> + Send + Sync>;

/// What the aggregator knows of each map site, by site index.
#[derive(Debug, Clone, Copy)]
pub struct MapSiteInfo {
    /// The kind of map.
    pub kind: MapKind,
    /// Whether the call's user-level operation is refined from the caller.
    pub refine_op: bool,
}

/// All maps.
#[derive(Clone)]
pub struct MapAggregate {
    /// Per map, by runtime address.
    pub maps: BTreeMap<u64, MapStats>,
    /// Keys kept per map.
    pub key_capacity: usize,
    /// Seconds per time cell of the key rows (1, 2, 4, …).
    pub column_scale: u64,
    /// Events received.
    pub events: u64,
    /// Events whose site index was unknown.
    pub unknown_sites: u64,
    /// Runtime maps' types (`*abi.MapType`), by map, as their operations
    /// passed them: what reading a map's structure needs.
    pub map_types: BTreeMap<u64, u64>,
    /// Readings of maps' structures, by map.
    pub health: BTreeMap<u64, HealthRecord>,
    keyed_maps: usize,
    sites: Vec<MapSiteInfo>,
    resolver: Option<OpResolver>,
    resolved: HashMap<u64, Option<MapOp>>,
    /// The kernel table's keys named by their events: the site and key.
    named: HashMap<KeyCountsKey, (MapSiteInfo, Option<RawKey>)>,
    /// The kernel table's counts as last read, per CPU.
    seen: HashMap<KeyCountsKey, Vec<KeyCounts>>,
    /// Operations each keyed count stands for: 1, or the key sampling's
    /// rate (one operation in this many had its key recorded).
    key_weight: u64,
}

impl std::fmt::Debug for MapAggregate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MapAggregate")
            .field("maps", &self.maps.len())
            .field("events", &self.events)
            .finish()
    }
}

impl Default for MapAggregate {
    fn default() -> Self {
        Self::new(Vec::new(), None, DEFAULT_KEY_CAPACITY)
    }
}

impl MapAggregate {
    /// The maps seen so far, busiest first (ties by address): the order
    /// reports list them in and map health reads them in.
    pub fn busiest(&self) -> Vec<(u64, &MapStats)> {
        let mut ordered: Vec<(u64, &MapStats)> = self
            .maps
            .iter()
            .map(|(&address, stats)| (address, stats))
            .collect();
        ordered.sort_by_key(|&(address, stats)| (std::cmp::Reverse(stats.total_ops()), address));
        ordered
    }

    /// An empty aggregate for the given sites.
    pub fn new(sites: Vec<MapSiteInfo>, resolver: Option<OpResolver>, key_capacity: usize) -> Self {
        Self {
            maps: BTreeMap::new(),
            key_capacity: key_capacity.max(1),
            column_scale: 1,
            events: 0,
            unknown_sites: 0,
            map_types: BTreeMap::new(),
            health: BTreeMap::new(),
            keyed_maps: 0,
            sites,
            resolver,
            resolved: HashMap::new(),
            named: HashMap::new(),
            seen: HashMap::new(),
            key_weight: 1,
        }
    }

    /// From now on, each keyed operation read stands for `weight`
    /// operations (the kernel records one key in `weight`; the others are
    /// counted per map only). Key counts are scaled by it; map totals stay
    /// exact.
    pub fn set_key_weight(&mut self, weight: u64) {
        self.key_weight = weight.max(1);
    }

    /// Folds in one event; `column` is its time column in seconds since the
    /// session began. An event that names a key the kernel counts (the
    /// first time a CPU counted it) is only remembered, for the counts that
    /// [`apply_table`](Self::apply_table) reads.
    pub fn add(&mut self, event: &MapEvent, column: u64) {
        self.events += 1;
        let Some(site) = self.sites.get(event.site_index as usize).copied() else {
            self.unknown_sites += 1;
            return;
        };
        let Some(op) = MapOp::from_raw(event.op.into()) else {
            self.unknown_sites += 1;
            return;
        };
        // A map's type never changes: looked up, not written, per event.
        if event.map_type != 0
            && site.kind == MapKind::Runtime
            && self.map_types.get(&event.map_addr) != Some(&event.map_type)
        {
            self.map_types.insert(event.map_addr, event.map_type);
        }
        let key = decode_key(event);
        if event.counted != 0 {
            let table_key = KeyCountsKey {
                map_addr: event.map_addr,
                key_hash: event.key_hash,
                caller_ip: event.caller_ip,
            };
            if let Some(key) = &key {
                let stats = self
                    .maps
                    .entry(event.map_addr)
                    .or_insert_with(|| MapStats::new(site.kind));
                stats.distinct_keys.add_hash(hash64(key));
            }
            self.named.entry(table_key).or_insert((site, key));
            return;
        }
        let op = self.refine(site, op, event.caller_ip);
        self.count(
            event.map_addr,
            site.kind,
            key.as_ref(),
            op,
            event.header.cpu as usize,
            1,
            column,
        );
    }

    /// The user-level operation of a call from `caller_ip` at `site`.
    fn refine(&mut self, site: MapSiteInfo, op: MapOp, caller_ip: u64) -> MapOp {
        if !site.refine_op || caller_ip == 0 {
            return op;
        }
        let Some(resolver) = &self.resolver else {
            return op;
        };
        let refined = *self
            .resolved
            .entry(caller_ip)
            .or_insert_with(|| resolver(caller_ip));
        refined.unwrap_or(op)
    }

    /// Folds in the kernel's per-(map, key, caller) counts (cumulative, per
    /// CPU), what changed since the last reading going to time column
    /// `column`. Rows whose key was not named yet (its event still in a
    /// ring) wait for the next reading.
    pub fn apply_table(&mut self, rows: &[(KeyCountsKey, Vec<KeyCounts>)], column: u64) {
        for (table_key, per_cpu) in rows {
            let Some((site, key)) = self.named.get(table_key).cloned() else {
                continue;
            };
            let previous = self
                .seen
                .entry(*table_key)
                .or_insert_with(|| vec![KeyCounts { ops: [0; MAP_OPS] }; per_cpu.len()]);
            if previous.len() < per_cpu.len() {
                previous.resize(per_cpu.len(), KeyCounts { ops: [0; MAP_OPS] });
            }
            let mut deltas = Vec::new();
            for (cpu, (now, before)) in per_cpu.iter().zip(previous.iter_mut()).enumerate() {
                for op in MapOp::ALL {
                    let delta = now.ops[op as usize].saturating_sub(before.ops[op as usize]);
                    if delta > 0 {
                        deltas.push((cpu, op, delta));
                    }
                }
                *before = *now;
            }
            for (cpu, op, delta) in deltas {
                let op = self.refine(site, op, table_key.caller_ip);
                self.count(
                    table_key.map_addr,
                    site.kind,
                    key.as_ref(),
                    op,
                    cpu,
                    delta,
                    column,
                );
            }
        }
    }

    /// Counts `n` operations `op` on `key` (or none) of a map, on `cpu`.
    #[allow(clippy::too_many_arguments)]
    fn count(
        &mut self,
        map_addr: u64,
        kind: MapKind,
        key: Option<&RawKey>,
        op: MapOp,
        cpu: usize,
        n: u64,
        column: u64,
    ) {
        let keyed_maps = self.keyed_maps;
        let capacity = self.key_capacity;
        let stats = self
            .maps
            .entry(map_addr)
            .or_insert_with(|| MapStats::new(kind));
        stats.keyed = true;
        stats.ops[op as usize] += n;
        if stats.per_cpu.len() <= cpu {
            stats.per_cpu.resize(cpu + 1, 0);
        }
        stats.per_cpu[cpu] += n;
        let Some(key) = key else {
            return;
        };
        // What the recorded keys stand for: the sampled-out operations
        // were counted per map, so only the keys' figures are scaled.
        stats.keyed_ops_seen += n;
        let n = n * self.key_weight;
        stats.keyed_ops_weighted += n;
        let hash = hash64(key);
        stats.distinct_keys.add_hash(hash);
        if op.is_write() {
            stats.keyed_writes += n;
            stats.distinct_written.add_hash(hash);
        }
        if stats.keys.is_none() && keyed_maps < MAX_KEYED_MAPS {
            stats.keys = Some(SpaceSaving::new(capacity));
            self.keyed_maps += 1;
        }
        if stats.keys.is_none() {
            return;
        }
        let mut cell = (column / self.column_scale) as usize;
        if cell >= MAX_KEY_COLUMNS {
            // Widen the columns of every map until this one fits.
            while (column / self.column_scale) as usize >= MAX_KEY_COLUMNS {
                self.column_scale *= 2;
                for stats in self.maps.values_mut() {
                    if let Some(keys) = stats.keys.as_mut() {
                        for payload in keys.payloads_mut() {
                            fold_pairs(&mut payload.cells);
                        }
                    }
                }
            }
            cell = (column / self.column_scale) as usize;
        }
        let Some(stats) = self.maps.get_mut(&map_addr) else {
            return;
        };
        let Some(keys) = stats.keys.as_mut() else {
            return;
        };
        let payload = keys.add_n(key, n);
        payload.ops[op as usize] += n;
        if payload.per_cpu.len() <= cpu {
            payload.per_cpu.resize(cpu + 1, 0);
        }
        payload.per_cpu[cpu] += n;
        if payload.cells.len() <= cell {
            payload.cells.resize(cell + 1, 0);
        }
        payload.cells[cell] += n;
    }

    /// Replaces the kernel-side counts of maps whose operations were not
    /// events (cumulative figures read from `MAP_COUNTS`; keys with
    /// [`SYNC_MAP_COUNT_FLAG`] set count a `sync.Map`).
    pub fn set_kernel_counts(&mut self, counts: &[(u64, MapCounts)]) {
        for (key, counted) in counts {
            let (address, kind) = if key & SYNC_MAP_COUNT_FLAG != 0 {
                (key & !SYNC_MAP_COUNT_FLAG, MapKind::SyncMap)
            } else {
                (*key, MapKind::Runtime)
            };
            let stats = self
                .maps
                .entry(address)
                .or_insert_with(|| MapStats::new(kind));
            stats.counted_ops = counted.ops;
            if kind == MapKind::Runtime && counted.map_type != 0 {
                self.map_types.insert(address, counted.map_type);
            }
        }
    }
}

/// Halves a row's resolution: cell `i` becomes cells `2i` and `2i + 1`.
fn fold_pairs(cells: &mut Vec<u64>) {
    let folded: Vec<u64> = cells.chunks(2).map(|pair| pair.iter().sum()).collect();
    *cells = folded;
}

/// The key an event carries, or `None` for operations without a key.
pub fn decode_key(event: &MapEvent) -> Option<RawKey> {
    let go_kind = u32::from(event.go_kind);
    Some(match KeyKind::from_raw(event.key_kind.into())? {
        KeyKind::None => return None,
        KeyKind::Str => {
            let copied = (event.copied as usize).min(event.key.len());
            RawKey::Str {
                text: String::from_utf8_lossy(&event.key[..copied]).into(),
                truncated: (event.key_len as usize) > copied,
            }
        }
        KeyKind::Int => {
            let width = event.key_len.clamp(1, 8);
            let value = event.key_int;
            if kind::is_address(go_kind) {
                RawKey::Pointer(value)
            } else if kind::is_signed(go_kind) {
                let shift = 64 - 8 * width;
                RawKey::Signed(((value << shift) as i64) >> shift)
            } else {
                RawKey::Unsigned(value)
            }
        }
        KeyKind::Bytes => {
            let copied = (event.copied as usize).min(event.key.len());
            RawKey::Other {
                key_type: event.key_type,
                hash: hash64(&event.key[..copied]),
            }
        }
        KeyKind::Unreadable => RawKey::Unreadable,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use probe_common::MAX_KEY_BYTES;

    fn event(map: u64, op: MapOp, key: &str, cpu: u32) -> MapEvent {
        let mut bytes = [0u8; MAX_KEY_BYTES];
        bytes[..key.len()].copy_from_slice(key.as_bytes());
        MapEvent {
            header: probe_common::EventHeader {
                tag: probe_common::EventTag::Map as u32,
                cpu,
                tgid: 1,
                tid: 1,
                timestamp_ns: 0,
            },
            map_addr: map,
            key_type: 0,
            key_int: 0,
            caller_ip: 0,
            key_hash: 0,
            site_index: 0,
            op: op as u8,
            key_kind: KeyKind::Str as u8,
            key_len: key.len() as u32,
            copied: key.len() as u16,
            go_kind: kind::STRING as u8,
            counted: 0,
            _pad: 0,
            key: bytes,
            map_type: 0,
        }
    }

    fn aggregate() -> MapAggregate {
        MapAggregate::new(
            vec![MapSiteInfo {
                kind: MapKind::Runtime,
                refine_op: false,
            }],
            None,
            16,
        )
    }

    #[test]
    fn counts_ops_per_key_and_cpu() {
        let mut agg = aggregate();
        agg.add(&event(0x10, MapOp::Load, "a", 0), 0);
        agg.add(&event(0x10, MapOp::Load, "a", 1), 0);
        agg.add(&event(0x10, MapOp::Store, "a", 1), 2);
        agg.add(&event(0x10, MapOp::Load, "b", 0), 2);
        let stats = &agg.maps[&0x10];
        assert_eq!(stats.ops[MapOp::Load as usize], 3);
        assert_eq!(stats.ops[MapOp::Store as usize], 1);
        assert_eq!(stats.per_cpu, vec![2, 2]);
        let keys = stats.keys.as_ref().unwrap();
        let top = keys.top(1)[0];
        assert_eq!(top.key.to_key(None).to_string(), "a");
        assert_eq!(top.count, 3);
        assert_eq!(top.payload.ops[MapOp::Load as usize], 2);
        assert_eq!(top.payload.per_cpu, vec![1, 2]);
        assert_eq!(top.payload.cells, vec![2, 0, 1]);
        assert_eq!(stats.keyed_writes, 1);
    }

    #[test]
    fn time_cells_widen_and_keep_totals() {
        let mut agg = aggregate();
        for column in 0..200 {
            agg.add(&event(0x10, MapOp::Load, "a", 0), column);
        }
        assert_eq!(agg.column_scale, 4);
        let keys = agg.maps[&0x10].keys.as_ref().unwrap();
        let cells = &keys.top(1)[0].payload.cells;
        assert!(cells.len() <= MAX_KEY_COLUMNS);
        assert_eq!(cells.iter().sum::<u64>(), 200);
        assert_eq!(cells[0], 4);
    }

    #[test]
    fn decodes_integers_by_kind() {
        let mut e = event(1, MapOp::Load, "", 0);
        e.key_kind = KeyKind::Int as u8;
        e.key_len = 8;
        e.go_kind = 6; // int64
        e.key_int = (-5i64) as u64;
        assert_eq!(decode_key(&e), Some(RawKey::Signed(-5)));
        e.key_len = 4;
        e.go_kind = 5; // int32
        e.key_int = 0xffff_fffe;
        assert_eq!(decode_key(&e), Some(RawKey::Signed(-2)));
        e.go_kind = 10; // uint32
        assert_eq!(decode_key(&e), Some(RawKey::Unsigned(4294967294)));
        e.go_kind = kind::POINTER as u8;
        assert_eq!(decode_key(&e), Some(RawKey::Pointer(0xffff_fffe)));
        let mut s = event(1, MapOp::Load, "abcdef", 0);
        s.copied = 3;
        assert_eq!(
            decode_key(&s).map(|k| k.to_key(None).to_string()),
            Some("abc…".to_string())
        );
    }
}
