//! The structure of a Go runtime map, read from the target's memory: how
//! full it is, how its entries spread over its buckets or groups, and what
//! deletes left behind.
//!
//! The reader walks the runtime's own data (see [`goruntime::MapLayout`])
//! through a [`Peek`], within a budget of bytes per reading, and checks
//! every size and pointer it follows against the layout's bounds before it
//! uses it: a map freed, reused or half-written while it is read yields an
//! [`HealthError`], never a walk through arbitrary memory. The target is
//! never stopped: what a reading sees may be a moment's mix, which
//! [`MapStructure::consistent`] tells.

use thiserror::Error;

use crate::goruntime::{BucketMapLayout, MapLayout, SwissMapLayout, SyncMapLayout, BUCKET_MAP};

/// Reads the target's memory.
pub trait Peek {
    /// Fills `buf` from runtime address `address`; false when the bytes
    /// cannot be read (unmapped).
    fn peek(&self, address: u64, buf: &mut [u8]) -> bool;
}

/// Bytes a reading of one map may read by default: a map of a million
/// small entries (a 16 MiB walk) is then sampled, not walked.
pub const DEFAULT_READ_BUDGET: u64 = 4 << 20;

/// Bytes all readings of one second may read together (a map gets at
/// most [`DEFAULT_READ_BUDGET`] of what is left).
pub const READ_BUDGET_PER_SECOND: u64 = 8 << 20;

/// The longest overflow chain followed.
pub const MAX_CHAIN: usize = 1024;

/// Most buckets of a bucket map (`B` ≤ 40 in the runtime; more is not a
/// map).
const MAX_LOG_BUCKETS: u8 = 40;

/// Most directory entries of a swiss map taken as a map (a directory of
/// 2^20 tables holds a billion entries).
const MAX_DIRECTORY: u64 = 1 << 20;

/// Largest bucket or group accepted: keys and values over 128 bytes are
/// stored behind pointers, so a cell or slot is at most 256 bytes.
const MAX_CELL_BYTES: u64 = 256;

/// Bytes read at a time from a bucket or group array.
const CHUNK: u64 = 64 << 10;

/// Why a map's structure could not be read.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum HealthError {
    /// Bytes the walk needed are not mapped (a freed map, a bad address).
    #[error("cannot read {len} bytes at {address:#x}")]
    Unreadable {
        /// Where.
        address: u64,
        /// How many.
        len: u64,
    },
    /// A field is out of the bounds of any map (the memory is not, or no
    /// longer, a map of this type).
    #[error("not a map: {field} = {value:#x}")]
    Invalid {
        /// Which field.
        field: &'static str,
        /// Its value.
        value: u64,
    },
}

/// One reading of a map's structure.
#[derive(Debug, Clone, PartialEq)]
pub struct MapStructure {
    /// Live entries, from the header (what `len` returns).
    pub entries: u64,
    /// Slots (swiss tables) or cells of the bucket array (8 per bucket,
    /// overflow buckets not counted).
    pub capacity: u64,
    /// Deleted slots (swiss tables: tombstones) or cells (bucket maps:
    /// `emptyOne` holes) seen by the walk.
    pub tombstones: u64,
    /// What only one implementation has.
    pub detail: MapDetail,
    /// Occupancy: entry `k` counts the buckets (with their overflow
    /// chains) holding `k` entries, or the groups with `k` full slots; the
    /// last entry also counts everything fuller.
    pub occupancy: Vec<u64>,
    /// Whether every bucket or group was read (else the figures from the
    /// walk are those of a prefix, within the budget).
    pub complete: bool,
    /// Whether the walk's own count of entries equals the header's (a map
    /// written while read may differ; a growing bucket map always does).
    pub consistent: bool,
    /// Bytes read.
    pub bytes_read: u64,
}

/// The figures of one implementation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MapDetail {
    /// A bucket map (Go ≤ 1.23).
    Buckets {
        /// log2 of the buckets (`B`).
        log_buckets: u8,
        /// Overflow buckets seen by the walk.
        overflow_buckets: u64,
        /// The longest overflow chain seen (overflow buckets after one
        /// bucket).
        longest_chain: u64,
        /// Whether a grow is in progress (entries are then in two bucket
        /// arrays; the walk reads the new one).
        growing: bool,
    },
    /// A `sync.Map` (Go ≤ 1.23): a read-only map that loads use without
    /// the mutex, and a dirty map that holds every key once a new one was
    /// stored.
    SyncMap {
        /// Entries of the read-only map (deleted ones not yet expunged
        /// included).
        read_entries: u64,
        /// Entries of the dirty map (0 when there is none).
        dirty_entries: u64,
        /// Whether there is a dirty map holding keys the read-only one
        /// lacks (loads of them miss, and take the mutex).
        amended: bool,
        /// Misses since the last promotion: at `dirty_entries` misses the
        /// dirty map becomes the read-only one.
        misses: u64,
    },
    /// A swiss-table map (Go ≥ 1.24).
    Swiss {
        /// Directory entries (0: a small map of one group).
        directory: u64,
        /// log2 of the directory's length.
        global_depth: u8,
        /// Distinct tables.
        tables: u64,
        /// Inserts into empty slots left before the tables must grow.
        growth_left: u64,
    },
}

/// The reading budget and bookkeeping of one walk.
struct Reader<'a, P: Peek> {
    peek: &'a P,
    budget: u64,
    read: u64,
}

impl<P: Peek> Reader<'_, P> {
    /// Reads `len` bytes at `address`, counted against the budget.
    fn bytes(&mut self, address: u64, len: u64) -> Result<Vec<u8>, HealthError> {
        let mut buf = vec![0u8; len as usize];
        if address == 0 || !self.peek.peek(address, &mut buf) {
            return Err(HealthError::Unreadable { address, len });
        }
        self.read += len;
        Ok(buf)
    }

    /// Whether `len` more bytes fit the budget.
    fn affords(&self, len: u64) -> bool {
        self.read + len <= self.budget
    }
}

fn u64_at(bytes: &[u8], offset: usize) -> u64 {
    bytes
        .get(offset..offset + 8)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u64::from_le_bytes)
}

fn u16_at(bytes: &[u8], offset: usize) -> u16 {
    bytes
        .get(offset..offset + 2)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u16::from_le_bytes)
}

/// Reads the structure of the map at `map` whose type descriptor is at
/// `map_type`, laid out as `layout` says, reading at most about `budget`
/// bytes (the header and type always; buckets or groups while the budget
/// lasts).
pub fn read_map(
    peek: &impl Peek,
    layout: MapLayout,
    map: u64,
    map_type: u64,
    budget: u64,
) -> Result<MapStructure, HealthError> {
    let mut reader = Reader {
        peek,
        budget,
        read: 0,
    };
    match layout {
        MapLayout::Buckets(l) => read_buckets(&mut reader, &l, map, map_type),
        MapLayout::Swiss(l) => read_swiss(&mut reader, &l, map, map_type),
    }
}

/// Occupancy bins kept: 0 to 15 entries per bucket chain, the last one
/// for 15 and more.
const BUCKET_BINS: usize = 16;

fn read_buckets(
    reader: &mut Reader<'_, impl Peek>,
    l: &BucketMapLayout,
    map: u64,
    map_type: u64,
) -> Result<MapStructure, HealthError> {
    let header = reader.bytes(map, l.header_size as u64)?;
    let entries = u64_at(&header, l.count);
    let log_buckets = header[l.log_buckets];
    if log_buckets > MAX_LOG_BUCKETS || entries > i64::MAX as u64 {
        return Err(HealthError::Invalid {
            field: "B",
            value: u64::from(log_buckets),
        });
    }
    let buckets = u64_at(&header, l.buckets);
    let growing = u64_at(&header, l.oldbuckets) != 0;
    let cells = l.cells as u64;
    let bucket_size = u64::from(u16_at(
        &reader.bytes(map_type + l.type_bucket_size as u64, 2)?,
        0,
    ));
    if bucket_size < cells + 8 + 8
        || bucket_size > cells + 2 * cells * MAX_CELL_BYTES + 8
        || !bucket_size.is_multiple_of(8)
    {
        return Err(HealthError::Invalid {
            field: "maptype.BucketSize",
            value: bucket_size,
        });
    }
    let count = 1u64 << log_buckets;
    let mut out = MapStructure {
        entries,
        capacity: count * cells,
        tombstones: 0,
        detail: MapDetail::Buckets {
            log_buckets,
            overflow_buckets: 0,
            longest_chain: 0,
            growing,
        },
        occupancy: vec![0; BUCKET_BINS],
        complete: true,
        consistent: true,
        bytes_read: 0,
    };
    if buckets == 0 {
        // A map made without a hint allocates its buckets on first insert.
        out.complete = entries == 0;
        out.consistent = entries == 0;
        out.bytes_read = reader.read;
        return Ok(out);
    }
    let (mut walked, mut overflow_buckets, mut longest) = (0u64, 0u64, 0u64);
    // Cells of one bucket: live ones and deleted ones.
    let tally = |bucket: &[u8]| {
        let tophash = &bucket[..l.cells];
        let live = tophash.iter().filter(|&&t| t >= l.min_top_hash).count() as u64;
        let holes = tophash.iter().filter(|&&t| t == l.empty_one).count() as u64;
        (live, holes, u64_at(bucket, bucket_size as usize - 8))
    };
    let per_chunk = (CHUNK / bucket_size).max(1);
    let mut index = 0;
    'walk: while index < count {
        let n = per_chunk.min(count - index);
        if !reader.affords(n * bucket_size) {
            out.complete = false;
            break;
        }
        let chunk = reader.bytes(buckets + index * bucket_size, n * bucket_size)?;
        for bucket in chunk.chunks_exact(bucket_size as usize) {
            let (mut live, mut holes, mut next) = tally(bucket);
            let mut chain = 0u64;
            while next != 0 && chain < MAX_CHAIN as u64 {
                if !reader.affords(bucket_size) {
                    out.complete = false;
                    break 'walk;
                }
                let overflow = reader.bytes(next, bucket_size)?;
                let (more, more_holes, after) = tally(&overflow);
                live += more;
                holes += more_holes;
                next = after;
                chain += 1;
            }
            if next != 0 {
                return Err(HealthError::Invalid {
                    field: "overflow chain",
                    value: chain,
                });
            }
            overflow_buckets += chain;
            longest = longest.max(chain);
            walked += live;
            out.tombstones += holes;
            out.occupancy[(live as usize).min(BUCKET_BINS - 1)] += 1;
            index += 1;
        }
    }
    out.detail = MapDetail::Buckets {
        log_buckets,
        overflow_buckets,
        longest_chain: longest,
        growing,
    };
    out.consistent = out.complete && !growing && walked == entries;
    out.bytes_read = reader.read;
    Ok(out)
}

fn read_swiss(
    reader: &mut Reader<'_, impl Peek>,
    l: &SwissMapLayout,
    map: u64,
    map_type: u64,
) -> Result<MapStructure, HealthError> {
    let header = reader.bytes(map, l.header_size as u64)?;
    let entries = u64_at(&header, l.used);
    let dir_ptr = u64_at(&header, l.dir_ptr);
    let dir_len = u64_at(&header, l.dir_len);
    let global_depth = header[l.global_depth];
    let slots = l.slots as u64;
    let group_size = u64_at(&reader.bytes(map_type + l.type_group_size as u64, 8)?, 0);
    if group_size < 8 + slots
        || group_size > 8 + 2 * slots * MAX_CELL_BYTES
        || !group_size.is_multiple_of(8)
    {
        return Err(HealthError::Invalid {
            field: "MapType.GroupSize",
            value: group_size,
        });
    }
    let bins = l.slots + 1;
    let mut out = MapStructure {
        entries,
        capacity: 0,
        tombstones: 0,
        detail: MapDetail::Swiss {
            directory: dir_len,
            global_depth,
            tables: 0,
            growth_left: 0,
        },
        occupancy: vec![0; bins],
        complete: true,
        consistent: true,
        bytes_read: 0,
    };
    let mut full = 0u64;
    // Counts the control words of groups starting at `data`.
    let mut groups = |reader: &mut Reader<'_, _>,
                      out: &mut MapStructure,
                      data: u64,
                      count: u64|
     -> Result<bool, HealthError> {
        let per_chunk = (CHUNK / group_size).max(1);
        let mut index = 0;
        while index < count {
            let n = per_chunk.min(count - index);
            if !reader.affords(n * group_size) {
                return Ok(false);
            }
            let chunk = reader.bytes(data + index * group_size, n * group_size)?;
            for group in chunk.chunks_exact(group_size as usize) {
                let ctrl = &group[..l.slots];
                let live = ctrl.iter().filter(|&&c| c & 0x80 == 0).count();
                out.tombstones += ctrl.iter().filter(|&&c| c == l.ctrl_deleted).count() as u64;
                out.occupancy[live] += 1;
                full += live as u64;
            }
            index += n;
        }
        Ok(true)
    };
    if dir_len == 0 {
        // Empty, or a small map: one group, no table.
        if dir_ptr != 0 {
            out.capacity = slots;
            out.complete = groups(reader, &mut out, dir_ptr, 1)?;
        } else if entries != 0 {
            return Err(HealthError::Invalid {
                field: "dirPtr",
                value: 0,
            });
        }
    } else {
        if !dir_len.is_power_of_two()
            || dir_len > MAX_DIRECTORY
            || dir_len != 1u64 << global_depth.min(63)
        {
            return Err(HealthError::Invalid {
                field: "dirLen",
                value: dir_len,
            });
        }
        let directory = reader.bytes(dir_ptr, dir_len * 8)?;
        let mut tables: Vec<u64> = directory.chunks_exact(8).map(|p| u64_at(p, 0)).collect();
        // A table of local depth d fills 2^(global − d) adjacent entries.
        tables.dedup();
        let mut growth_left = 0;
        for &table in &tables {
            let t = reader.bytes(table, l.table_size as u64)?;
            let capacity = u64::from(u16_at(&t, l.table_capacity));
            let used = u64::from(u16_at(&t, l.table_used));
            let mask = u64_at(&t, l.table_length_mask);
            let data = u64_at(&t, l.table_groups);
            if !capacity.is_power_of_two()
                || capacity < slots
                || capacity > l.max_table_capacity
                || mask + 1 != capacity / slots
                || used > capacity
                || t[l.table_local_depth] > global_depth
            {
                return Err(HealthError::Invalid {
                    field: "table.capacity",
                    value: capacity,
                });
            }
            out.capacity += capacity;
            growth_left += u64::from(u16_at(&t, l.table_growth_left));
            if out.complete {
                out.complete = groups(reader, &mut out, data, mask + 1)?;
            }
        }
        out.detail = MapDetail::Swiss {
            directory: dir_len,
            global_depth,
            tables: tables.len() as u64,
            growth_left,
        };
    }
    out.consistent = out.complete && full == entries;
    out.bytes_read = reader.read;
    Ok(out)
}

/// Reads a `sync.Map` (Go ≤ 1.23) at `map`: its read-only map's and dirty
/// map's entries (both bucket maps' `count`), `amended` and `misses`. A
/// zero `sync.Map` has no read-only map yet (entries 0).
pub fn read_sync_map(
    peek: &impl Peek,
    layout: SyncMapLayout,
    map: u64,
) -> Result<MapStructure, HealthError> {
    let mut reader = Reader {
        peek,
        budget: u64::MAX,
        read: 0,
    };
    let header = reader.bytes(map, (layout.misses + 8) as u64)?;
    let read_only = u64_at(&header, layout.read);
    let dirty = u64_at(&header, layout.dirty);
    let misses = u64_at(&header, layout.misses);
    let count = |reader: &mut Reader<'_, _>, hmap: u64| -> Result<u64, HealthError> {
        if hmap == 0 {
            return Ok(0);
        }
        let n = u64_at(&reader.bytes(hmap + BUCKET_MAP.count as u64, 8)?, 0);
        if n > i64::MAX as u64 {
            return Err(HealthError::Invalid {
                field: "hmap.count",
                value: n,
            });
        }
        Ok(n)
    };
    let (read_map, amended) = if read_only == 0 {
        (0, false)
    } else {
        let ro = reader.bytes(read_only, (layout.read_only_amended + 1) as u64)?;
        let amended = ro[layout.read_only_amended];
        if amended > 1 {
            return Err(HealthError::Invalid {
                field: "readOnly.amended",
                value: u64::from(amended),
            });
        }
        (u64_at(&ro, layout.read_only_map), amended == 1)
    };
    let read_entries = count(&mut reader, read_map)?;
    let dirty_entries = count(&mut reader, dirty)?;
    if misses > i64::MAX as u64 {
        return Err(HealthError::Invalid {
            field: "misses",
            value: misses,
        });
    }
    Ok(MapStructure {
        // Once amended, the dirty map holds every key.
        entries: if amended { dirty_entries } else { read_entries },
        capacity: 0,
        tombstones: 0,
        detail: MapDetail::SyncMap {
            read_entries,
            dirty_entries,
            amended,
            misses,
        },
        occupancy: Vec::new(),
        complete: true,
        consistent: true,
        bytes_read: reader.read,
    })
}

impl MapStructure {
    /// Entries per slot of capacity (0 for a map with none).
    pub fn load_factor(&self) -> f64 {
        if self.capacity == 0 {
            0.0
        } else {
            self.entries as f64 / self.capacity as f64
        }
    }

    /// Deleted slots per slot of capacity.
    pub fn tombstone_ratio(&self) -> f64 {
        if self.capacity == 0 {
            0.0
        } else {
            self.tombstones as f64 / self.capacity as f64
        }
    }

    /// How far the occupancy is from what a uniform hash gives at this
    /// load, as a total variation distance (0: as expected; 1: nothing
    /// alike): for a bucket map, entries per bucket against a Poisson
    /// distribution of mean entries / buckets (chained buckets fill
    /// independently). `None` for swiss tables (probing moves entries
    /// between groups, so no simple law applies), while a bucket map
    /// grows, for a partial walk, or under [`SKEW_MIN_BUCKETS`] buckets.
    pub fn skew(&self) -> Option<f64> {
        let MapDetail::Buckets { growing, .. } = self.detail else {
            return None;
        };
        let buckets: u64 = self.occupancy.iter().sum();
        if growing || !self.complete || buckets < SKEW_MIN_BUCKETS {
            return None;
        }
        let walked: u64 = self
            .occupancy
            .iter()
            .enumerate()
            .map(|(k, &n)| k as u64 * n)
            .sum();
        let mean = walked as f64 / buckets as f64;
        let mut expected = (-mean).exp();
        let mut distance = 0.0f64;
        let mut expected_total = 0.0f64;
        let last = self.occupancy.len() - 1;
        for (k, &n) in self.occupancy.iter().enumerate() {
            let p = if k == last {
                (1.0 - expected_total).max(0.0)
            } else {
                expected
            };
            distance += (n as f64 / buckets as f64 - p).abs();
            expected_total += expected;
            expected *= mean / (k + 1) as f64;
        }
        Some(distance / 2.0)
    }
}

/// Fewest buckets for a skew figure: below, chance alone moves it far.
pub const SKEW_MIN_BUCKETS: u64 = 256;

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::goruntime::{BUCKET_MAP, SWISS_MAP};

    /// Memory as a few regions.
    #[derive(Default)]
    struct Fake(BTreeMap<u64, Vec<u8>>);

    impl Fake {
        fn put(&mut self, address: u64, bytes: Vec<u8>) {
            self.0.insert(address, bytes);
        }
    }

    impl Peek for Fake {
        fn peek(&self, address: u64, buf: &mut [u8]) -> bool {
            let Some((&start, bytes)) = self.0.range(..=address).next_back() else {
                return false;
            };
            let offset = (address - start) as usize;
            match bytes.get(offset..offset + buf.len()) {
                Some(src) => {
                    buf.copy_from_slice(src);
                    true
                }
                None => false,
            }
        }
    }

    fn le(value: u64) -> [u8; 8] {
        value.to_le_bytes()
    }

    /// A bucket map of 4 buckets (bucket size 8 + 8×16 + 8 = 144) holding
    /// 3, 0, 8 (+ an overflow bucket with 2) and 1 entries, a deleted cell
    /// in bucket 0.
    fn bucket_map() -> Fake {
        let mut m = Fake::default();
        let size = 144usize;
        let mut header = vec![0u8; 48];
        header[0..8].copy_from_slice(&le(14));
        header[9] = 2;
        header[16..24].copy_from_slice(&le(0x10_000));
        m.put(0x1000, header);
        let mut ty = vec![0u8; 96];
        ty[82..84].copy_from_slice(&144u16.to_le_bytes());
        m.put(0x2000, ty);
        let mut buckets = vec![0u8; 4 * size];
        buckets[..4].copy_from_slice(&[9, 1, 10, 11]);
        buckets[2 * size..2 * size + 8].copy_from_slice(&[5; 8]);
        buckets[3 * size - 8..3 * size].copy_from_slice(&le(0x20_000));
        buckets[3 * size] = 200;
        m.put(0x10_000, buckets);
        let mut overflow = vec![0u8; size];
        overflow[..2].copy_from_slice(&[7, 8]);
        m.put(0x20_000, overflow);
        m
    }

    #[test]
    fn walks_a_bucket_map_and_its_overflow_chains() {
        let m = bucket_map();
        let s = read_map(&m, MapLayout::Buckets(BUCKET_MAP), 0x1000, 0x2000, 1 << 20).unwrap();
        assert_eq!(s.entries, 14);
        assert_eq!(s.capacity, 32);
        assert_eq!(s.tombstones, 1);
        assert!(s.complete && s.consistent, "{s:?}");
        assert_eq!(
            s.detail,
            MapDetail::Buckets {
                log_buckets: 2,
                overflow_buckets: 1,
                longest_chain: 1,
                growing: false
            }
        );
        let mut expected = vec![0; BUCKET_BINS];
        expected[0] = 1;
        expected[1] = 1;
        expected[3] = 1;
        expected[10] = 1;
        assert_eq!(s.occupancy, expected);
        // Too few buckets for a skew figure.
        assert_eq!(s.skew(), None);
    }

    #[test]
    fn reads_a_sync_map_s_two_maps() {
        let layout = crate::goruntime::sync_map_layout(Some((1, 23))).unwrap();
        let mut m = Fake::default();
        // Map{mu; read *readOnly; dirty *hmap; misses}
        let mut header = vec![0u8; 32];
        header[8..16].copy_from_slice(&le(0x2000));
        header[16..24].copy_from_slice(&le(0x4000));
        header[24..32].copy_from_slice(&le(17));
        m.put(0x1000, header);
        let mut read_only = vec![0u8; 16];
        read_only[..8].copy_from_slice(&le(0x3000));
        read_only[8] = 1;
        m.put(0x2000, read_only);
        m.put(0x3000, le(100).to_vec());
        m.put(0x4000, le(130).to_vec());
        let s = read_sync_map(&m, layout, 0x1000).unwrap();
        assert_eq!(s.entries, 130);
        assert_eq!(
            s.detail,
            MapDetail::SyncMap {
                read_entries: 100,
                dirty_entries: 130,
                amended: true,
                misses: 17
            }
        );
        // Right after a promotion: no dirty map, not amended.
        let mut header = vec![0u8; 32];
        header[8..16].copy_from_slice(&le(0x2000));
        m.put(0x1000, header);
        let mut read_only = vec![0u8; 16];
        read_only[..8].copy_from_slice(&le(0x4000));
        m.put(0x2000, read_only);
        let s = read_sync_map(&m, layout, 0x1000).unwrap();
        assert_eq!(s.entries, 130);
        // Not a readOnly: amended must be a bool.
        let mut read_only = vec![0u8; 16];
        read_only[8] = 7;
        m.put(0x2000, read_only);
        assert!(matches!(
            read_sync_map(&m, layout, 0x1000),
            Err(HealthError::Invalid {
                field: "readOnly.amended",
                ..
            })
        ));
        // A zero sync.Map: nothing yet.
        m.put(0x1000, vec![0u8; 32]);
        assert_eq!(read_sync_map(&m, layout, 0x1000).unwrap().entries, 0);
        // Go 1.19 kept the pointer in an atomic.Value's data word.
        assert_eq!(
            crate::goruntime::sync_map_layout(Some((1, 19)))
                .unwrap()
                .read,
            16
        );
        assert_eq!(crate::goruntime::sync_map_layout(Some((1, 24))), None);
    }

    #[test]
    fn a_small_budget_reads_a_prefix() {
        let m = bucket_map();
        let s = read_map(&m, MapLayout::Buckets(BUCKET_MAP), 0x1000, 0x2000, 200).unwrap();
        assert!(!s.complete && !s.consistent);
        assert!(s.bytes_read <= 200, "{}", s.bytes_read);
    }

    #[test]
    fn garbage_is_not_a_map() {
        let mut m = bucket_map();
        let mut header = vec![0u8; 48];
        header[9] = 200;
        m.put(0x1000, header);
        assert!(matches!(
            read_map(&m, MapLayout::Buckets(BUCKET_MAP), 0x1000, 0x2000, 1 << 20),
            Err(HealthError::Invalid { field: "B", .. })
        ));
        // An overflow chain into unmapped memory.
        let mut m = bucket_map();
        let mut overflow = vec![0u8; 144];
        overflow[136..144].copy_from_slice(&le(0xdead_0000));
        m.put(0x20_000, overflow);
        assert!(matches!(
            read_map(&m, MapLayout::Buckets(BUCKET_MAP), 0x1000, 0x2000, 1 << 20),
            Err(HealthError::Unreadable { .. })
        ));
        // An unmapped header.
        assert!(matches!(
            read_map(&m, MapLayout::Buckets(BUCKET_MAP), 0x9000, 0x2000, 1 << 20),
            Err(HealthError::Unreadable { .. })
        ));
    }

    /// A swiss map with a directory of two entries pointing at one table of
    /// 16 slots (2 groups of 8 + 8×16 bytes) holding 9 entries, with 2
    /// tombstones.
    fn swiss_map() -> Fake {
        let mut m = Fake::default();
        let group = 136usize;
        let mut header = vec![0u8; 48];
        header[0..8].copy_from_slice(&le(9));
        header[16..24].copy_from_slice(&le(0x3000));
        header[24..32].copy_from_slice(&le(2));
        header[32] = 1;
        m.put(0x1000, header);
        let mut ty = vec![0u8; 96];
        ty[80..88].copy_from_slice(&le(group as u64));
        m.put(0x2000, ty);
        let mut dir = le(0x4000).to_vec();
        dir.extend_from_slice(&le(0x4000));
        m.put(0x3000, dir);
        let mut table = vec![0u8; 32];
        table[0..2].copy_from_slice(&9u16.to_le_bytes());
        table[2..4].copy_from_slice(&16u16.to_le_bytes());
        table[4..6].copy_from_slice(&3u16.to_le_bytes());
        table[16..24].copy_from_slice(&le(0x10_000));
        table[24..32].copy_from_slice(&le(1));
        m.put(0x4000, table);
        let mut groups = vec![0u8; 2 * group];
        groups[..8].copy_from_slice(&[1, 2, 3, 4, 5, 6, 0xfe, 0xfe]);
        groups[group..group + 8].copy_from_slice(&[7, 8, 9, 0x80, 0x80, 0x80, 0x80, 0x80]);
        m.put(0x10_000, groups);
        m
    }

    #[test]
    fn walks_a_swiss_map_and_counts_its_tombstones() {
        let m = swiss_map();
        let s = read_map(&m, MapLayout::Swiss(SWISS_MAP), 0x1000, 0x2000, 1 << 20).unwrap();
        assert_eq!(s.entries, 9);
        assert_eq!(s.capacity, 16);
        assert_eq!(s.tombstones, 2);
        assert!(s.complete && s.consistent, "{s:?}");
        assert_eq!(
            s.detail,
            MapDetail::Swiss {
                directory: 2,
                global_depth: 1,
                tables: 1,
                growth_left: 3
            }
        );
        assert_eq!(s.occupancy, vec![0, 0, 0, 1, 0, 0, 1, 0, 0]);
        assert!((s.tombstone_ratio() - 0.125).abs() < 1e-9);
        assert_eq!(s.skew(), None);
    }

    #[test]
    fn a_swiss_table_out_of_bounds_is_not_a_map() {
        let mut m = swiss_map();
        let mut table = vec![0u8; 32];
        table[2..4].copy_from_slice(&12u16.to_le_bytes());
        m.put(0x4000, table);
        assert!(matches!(
            read_map(&m, MapLayout::Swiss(SWISS_MAP), 0x1000, 0x2000, 1 << 20),
            Err(HealthError::Invalid {
                field: "table.capacity",
                ..
            })
        ));
    }

    #[test]
    fn a_uniform_spread_has_little_skew_and_a_pile_up_much() {
        let structure = |occupancy: Vec<u64>| MapStructure {
            entries: 0,
            capacity: 0,
            tombstones: 0,
            detail: MapDetail::Buckets {
                log_buckets: 10,
                overflow_buckets: 0,
                longest_chain: 0,
                growing: false,
            },
            occupancy,
            complete: true,
            consistent: true,
            bytes_read: 0,
        };
        // 1024 buckets at a mean of 2 per bucket, as Poisson puts them.
        let mut poisson = vec![0u64; BUCKET_BINS];
        let mut p = (-2.0f64).exp();
        for (k, bin) in poisson.iter_mut().enumerate() {
            *bin = (p * 1024.0).round() as u64;
            p *= 2.0 / (k + 1) as f64;
        }
        let uniform = structure(poisson).skew().unwrap();
        assert!(uniform < 0.02, "{uniform}");
        // The same entries in an eighth of the buckets.
        let mut piled = vec![0u64; BUCKET_BINS];
        piled[0] = 896;
        piled[15] = 128;
        let skew = structure(piled).skew().unwrap();
        assert!(skew > 0.5, "{skew}");
    }
}
